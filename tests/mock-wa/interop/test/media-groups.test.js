// Media and groups with Baileys 7 against mock-wa: an image, a video and a
// voice note the mock's contact sends are downloaded and decrypted by
// Baileys; an image, a video and a voice note Baileys uploads and sends are
// decrypted by the mock; Baileys posts to a group and
// reads the members' posts. Baileys reaches the mock's loopback media host
// through its own `fetchAgent` and a fetch `dispatcher` (lib/plainhttp.js).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { downloadMediaMessage } from 'baileys'
import { pairedClient } from '../lib/client.js'
import { eventually, startMock } from '../lib/mock.js'
import { plainDispatcher, plainHttpsAgent } from '../lib/plainhttp.js'

const CONTACT = '15557654321'
const MEMBER = '15557654322'

const sha256 = data => createHash('sha256').update(data).digest('hex')

/** Bytes that start like a PNG and are not all alike. */
function pngLike(size) {
	const data = Buffer.alloc(size)
	Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]).copy(data)
	for (let i = 8; i < size; i++) {
		data[i] = (i * 7) % 251
	}
	return data
}

describe('Baileys 7 media and groups against mock-wa', () => {
	let mock
	let client
	let jid
	let phone

	before(async () => {
		mock = await startMock()
		;({ client, jid } = await pairedClient(mock, { fetchAgent: plainHttpsAgent() }))
		phone = jid.split(':')[0]
	})

	after(async () => {
		await client?.remove()
		mock?.stop()
	})

	test('downloads and decrypts an image mock-wa sent', async () => {
		const image = pngLike(30_000)
		const got = client.next('message', m => m.message?.imageMessage && m)
		const { id } = await mock.call('POST', '/admin/deliver', {
			from: CONTACT,
			to: phone,
			media: { kind: 'image', mimetype: 'image/png', caption: 'from the mock', data_base64: image.toString('base64') },
		})
		const m = await got
		assert.equal(m.key.id, id)
		assert.equal(m.message.imageMessage.caption, 'from the mock')
		assert.ok(m.message.imageMessage.url.startsWith(`https://${mock.media}/`), m.message.imageMessage.url)
		const data = await downloadMediaMessage(m, 'buffer', { options: { dispatcher: plainDispatcher() } })
		assert.equal(data.length, image.length)
		assert.equal(sha256(data), sha256(image))
		assert.equal(Buffer.from(m.message.imageMessage.fileSha256).toString('hex'), sha256(image))
	})

	test('uploads an image and sends it; mock-wa decrypts it', async () => {
		const image = pngLike(12_345)
		const { lid } = await mock.call('GET', `/admin/contacts?phone=${CONTACT}`)
		const sent = await client.sock.sendMessage(lid, {
			image,
			mimetype: 'image/png',
			caption: 'from baileys',
			jpegThumbnail: '',
		})
		const entry = await eventually('the contact to record the image', async () => {
			const inbox = await mock.call('GET', `/admin/inbox?contact=${CONTACT}`)
			return inbox.find(e => e.id === sent.key.id)
		})
		assert.equal(entry.text, 'from baileys')
		assert.deepEqual(
			[entry.media.kind, entry.media.mimetype, entry.media.size, entry.media.sha256, entry.media.hashes_match],
			['image', 'image/png', image.length, sha256(image), true],
		)
		const stats = await mock.stats()
		assert.equal(stats.media_uploads, 1)
	})

	// Each kind expands its media key with its own HKDF info (Video, Audio):
	// a blob the mock encrypted or decrypted under another kind's keys would
	// fail Baileys' MAC check or the mock's.
	const av = [
		{ kind: 'video', field: 'videoMessage', mimetype: 'video/mp4', caption: 'a clip', head: [0, 0, 0, 0x18, 0x66, 0x74, 0x79, 0x70] },
		{ kind: 'voice', field: 'audioMessage', mimetype: 'audio/ogg; codecs=opus', head: [0x4f, 0x67, 0x67, 0x53] },
	]

	for (const { kind, field, mimetype, caption, head } of av) {
		test(`downloads and decrypts a ${kind} mock-wa sent`, async () => {
			const file = pngLike(20_000)
			Buffer.from(head).copy(file)
			const got = client.next('message', m => m.message?.[field] && m)
			const { id } = await mock.call('POST', '/admin/deliver', {
				from: CONTACT,
				to: phone,
				media: { kind, mimetype, caption, data_base64: file.toString('base64') },
			})
			const m = await got
			assert.equal(m.key.id, id)
			assert.equal(m.message[field].mimetype, mimetype)
			if (kind === 'voice') {
				assert.equal(m.message[field].ptt, true)
			} else {
				assert.equal(m.message[field].caption, caption)
			}
			const data = await downloadMediaMessage(m, 'buffer', { options: { dispatcher: plainDispatcher() } })
			assert.equal(sha256(data), sha256(file))
		})

		test(`uploads a ${kind} and sends it; mock-wa decrypts it`, async () => {
			const file = pngLike(15_000)
			Buffer.from(head).copy(file)
			const { lid } = await mock.call('GET', `/admin/contacts?phone=${CONTACT}`)
			// Duration, waveform and thumbnail given, so Baileys needs no
			// ffmpeg or audio decoder to compute them.
			const content =
				kind === 'voice'
					? { audio: file, mimetype, ptt: true, seconds: 2, waveform: new Uint8Array(64) }
					: { video: file, mimetype, caption, jpegThumbnail: '' }
			const sent = await client.sock.sendMessage(lid, content)
			const entry = await eventually(`the contact to record the ${kind}`, async () => {
				const inbox = await mock.call('GET', `/admin/inbox?contact=${CONTACT}`)
				return inbox.find(e => e.id === sent.key.id)
			})
			assert.deepEqual(
				[entry.media.kind, entry.media.mimetype, entry.media.size, entry.media.sha256, entry.media.hashes_match],
				[kind, mimetype, file.length, sha256(file), true],
			)
		})
	}

	test('sends and receives in a group', async () => {
		const { jid: group } = await mock.call('POST', '/admin/groups', {
			subject: 'Interop',
			members: [CONTACT, MEMBER],
			with_account: jid,
		})
		assert.match(group, /^\d+@g\.us$/)
		const memberLid = (await mock.call('GET', `/admin/contacts?phone=${MEMBER}`)).lid
		for (const text of ['first post', 'second post']) {
			const got = client.next('message', m => m.key.remoteJid === group && m.message?.conversation === text && m)
			const { id } = await mock.call('POST', '/admin/deliver', { from: MEMBER, group, text })
			const m = await got
			assert.equal(m.key.id, id)
			assert.equal(m.key.participant, memberLid)
		}

		const metadata = await client.sock.groupMetadata(group)
		assert.equal(metadata.subject, 'Interop')
		assert.equal(metadata.participants.length, 3)

		const posts = []
		for (const text of ['hello group', 'and again']) {
			posts.push((await client.sock.sendMessage(group, { text })).key.id)
		}
		const inbox = await eventually('the group to record both posts', async () => {
			const entries = await mock.call('GET', `/admin/inbox?group=${group}`)
			return entries.length >= 2 && entries
		})
		assert.deepEqual(
			inbox.map(e => [e.id, e.text, e.from]),
			[
				[posts[0], 'hello group', `${phone}@s.whatsapp.net`],
				[posts[1], 'and again', `${phone}@s.whatsapp.net`],
			],
		)
		const stats = await mock.call('GET', '/admin/messaging/stats')
		assert.equal(stats.decrypt_failures, 0, JSON.stringify(stats))
	})
})
