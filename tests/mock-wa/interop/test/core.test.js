// Pairing, login, one-to-one texts both ways (LID- and phone-addressed) and
// reconnects, with Baileys 7 against mock-wa. The cases share one paired
// account and run in order.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Client, pairedClient } from '../lib/client.js'
import { eventually, startMock } from '../lib/mock.js'

const LID_CONTACT = '15557654321'
const PN_CONTACT = '15557650000'

describe('Baileys 7 against mock-wa', () => {
	let mock
	let client
	let jid

	before(async () => {
		mock = await startMock()
	})

	after(async () => {
		await client?.remove()
		mock?.stop()
	})

	test('pairs through the QR link form', async () => {
		;({ client, jid } = await pairedClient(mock))
		assert.match(jid, /^\d+:\d+@s\.whatsapp\.net$/)
		const devices = await mock.call('GET', '/admin/devices')
		assert.deepEqual(
			devices.map(d => d.jid),
			[jid],
		)
		assert.ok(client.qrs >= 1)
		assert.match(client.state.creds.me.lid ?? '', /@lid$/, 'pair-success gave the LID')
	})

	test('logs in again with no QR', async () => {
		const before = await mock.stats()
		await client.stop()
		const again = await Client.create(mock, client.dir)
		const opened = again.next('open')
		again.start()
		await opened
		client = again
		const now = await mock.stats()
		assert.equal(client.qrs, 0, 'no QR on a returning login')
		assert.equal(now.pairings, before.pairings)
		assert.equal(now.logins, before.logins + 1)
	})

	test('sends a text to a LID-addressed contact and to a phone-addressed one', async () => {
		const { lid } = await mock.call('GET', `/admin/contacts?phone=${LID_CONTACT}`)
		assert.match(lid, /^\d+@lid$/)
		assert.notEqual(lid, `${LID_CONTACT}@lid`)
		const toLid = await client.sock.sendMessage(lid, { text: 'hello by lid' })
		const toPn = await client.sock.sendMessage(`${PN_CONTACT}@s.whatsapp.net`, { text: 'hello by number' })
		const lidInbox = await eventually('the LID contact to record the text', async () => {
			const inbox = await mock.call('GET', `/admin/inbox?contact=${LID_CONTACT}`)
			return inbox.length > 0 && inbox
		})
		const pnInbox = await eventually('the phone contact to record the text', async () => {
			const inbox = await mock.call('GET', `/admin/inbox?contact=${PN_CONTACT}`)
			return inbox.length > 0 && inbox
		})
		assert.deepEqual(
			lidInbox.map(e => [e.id, e.text, e.addressing, e.to]),
			[[toLid.key.id, 'hello by lid', 'lid', lid]],
		)
		assert.deepEqual(
			pnInbox.map(e => [e.id, e.text, e.addressing]),
			[[toPn.key.id, 'hello by number', 'pn']],
		)
		const stats = await mock.call('GET', '/admin/messaging/stats')
		assert.equal(stats.decrypt_failures, 0, JSON.stringify(stats))
	})

	test('receives a LID-addressed text and a phone-addressed one', async () => {
		const phone = jid.split(':')[0]
		const { lid } = await mock.call('GET', `/admin/contacts?phone=${LID_CONTACT}`)
		const byLid = client.next('message', m => m.message?.conversation === 'from the lid' && m)
		const { id: lidId } = await mock.call('POST', '/admin/deliver', {
			from: LID_CONTACT,
			to: phone,
			text: 'from the lid',
		})
		const m1 = await byLid
		assert.equal(m1.key.id, lidId)
		assert.equal(m1.key.remoteJid, lid)
		assert.equal(m1.key.remoteJidAlt, `${LID_CONTACT}@s.whatsapp.net`)

		const byPn = client.next('message', m => m.message?.conversation === 'from the number' && m)
		const { id: pnId } = await mock.call('POST', '/admin/deliver', {
			from: PN_CONTACT,
			to: phone,
			text: 'from the number',
			addressing: 'pn',
		})
		const m2 = await byPn
		assert.equal(m2.key.id, pnId)
		assert.equal(m2.key.remoteJid, `${PN_CONTACT}@s.whatsapp.net`)
		await eventually('Baileys to ack both messages', async () => {
			const stats = await mock.call('GET', '/admin/messaging/stats')
			return stats.client_acks >= 2
		})
	})

	for (const [name, fault] of [
		['EOF', { kind: 'eof' }],
		['stream error 515', { kind: 'stream-error', code: 515 }],
	]) {
		test(`reconnects after ${name}`, async () => {
			const before = await mock.stats()
			const opens = client.opens
			const reopened = client.next('open', n => n > opens && n)
			const { affected } = await mock.call('POST', '/admin/fault', { target: jid, ...fault })
			assert.equal(affected, 1)
			await reopened
			const now = await eventually('a new login', async () => {
				const s = await mock.stats()
				return s.logins > before.logins && s
			})
			assert.equal(now.pairings, before.pairings, 'no new pairing')
			assert.equal(client.qrs, 0)
		})
	}
})
