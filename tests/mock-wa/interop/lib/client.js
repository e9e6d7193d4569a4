// A Baileys 7 client, unmodified, pointed at mock-wa: the WebSocket URL and
// the mock's root key go in through Baileys' own settings (its socket
// config and its exported certificate details), nothing is patched.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import makeWASocket, { DisconnectReason, WA_CERT_DETAILS, useMultiFileAuthState } from 'baileys'
import pino from 'pino'

const logger = pino({ level: process.env.BAILEYS_LOG || 'silent' })

/**
 * A client that keeps one socket open, reconnecting the way a Baileys
 * application does (a new socket after every close that is not a logout).
 * Events of every socket go to `on*` listeners registered with `on()`.
 */
export class Client {
	constructor(mock, dir, state, saveCreds, socketOptions = {}) {
		this.mock = mock
		this.socketOptions = socketOptions
		this.dir = dir
		this.state = state
		this.saveCreds = saveCreds
		this.listeners = new Map()
		this.closes = []
		this.opens = 0
		this.qrs = 0
		this.stopped = false
		this.sock = null
	}

	/** `socketOptions` go to every socket's config on top of the defaults. */
	static async create(mock, dir, socketOptions) {
		WA_CERT_DETAILS.PUBLIC_KEY = mock.rootKey
		dir ??= await mkdtemp(path.join(tmpdir(), 'mock-wa-baileys-'))
		const { state, saveCreds } = await useMultiFileAuthState(dir)
		return new Client(mock, dir, state, saveCreds, socketOptions)
	}

	on(event, fn) {
		if (!this.listeners.has(event)) {
			this.listeners.set(event, new Set())
		}
		this.listeners.get(event).add(fn)
		return () => this.listeners.get(event).delete(fn)
	}

	emit(event, data) {
		for (const fn of this.listeners.get(event) ?? []) {
			fn(data)
		}
	}

	/** Resolves with the first `event` whose data `pick` maps to a value. */
	next(event, pick = d => d, ms = 30_000) {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				off()
				reject(new Error(`no ${event} within ${ms} ms`))
			}, ms)
			const off = this.on(event, data => {
				const value = pick(data)
				if (value) {
					clearTimeout(timer)
					off()
					resolve(value)
				}
			})
		})
	}

	/** Opens a socket (and a new one after each close). */
	start() {
		this.stopped = false
		const sock = makeWASocket({
			auth: this.state,
			waWebSocketUrl: this.mock.ws,
			logger,
			browser: ['Ubuntu', 'Chrome', '22.04'],
			markOnlineOnConnect: false,
			syncFullHistory: false,
			...this.socketOptions,
		})
		this.sock = sock
		sock.ev.on('creds.update', this.saveCreds)
		sock.ev.on('connection.update', update => {
			if (update.qr) {
				this.qrs++
				this.emit('qr', update.qr)
			}
			if (update.connection === 'open') {
				this.opens++
				this.emit('open', this.opens)
			}
			if (update.connection === 'close') {
				const code = update.lastDisconnect?.error?.output?.statusCode
				this.closes.push(code)
				this.emit('close', code)
				if (!this.stopped && code !== DisconnectReason.loggedOut && this.sock === sock) {
					this.start()
				}
			}
		})
		sock.ev.on('messages.upsert', ({ messages }) => {
			for (const m of messages) {
				this.emit('message', m)
			}
		})
		return sock
	}

	/** Closes the socket for good (the auth state stays on disk). */
	async stop() {
		this.stopped = true
		const sock = this.sock
		this.sock = null
		if (sock) {
			const closed = new Promise(resolve => sock.ev.on('connection.update', u => u.connection === 'close' && resolve()))
			sock.end(undefined)
			await Promise.race([closed, new Promise(resolve => setTimeout(resolve, 5_000))])
		}
	}

	async remove() {
		await this.stop()
		await rm(this.dir, { recursive: true, force: true })
	}

	/** The account's device JID, once logged in. */
	get jid() {
		return this.state.creds.me?.id
	}
}

/** A client paired through the QR link Baileys renders, scanned by the mock's phone. */
export async function pairedClient(mock, socketOptions) {
	const client = await Client.create(mock, undefined, socketOptions)
	const qr = client.next('qr')
	const opened = client.next('open', n => n, 60_000)
	client.start()
	const { jid } = await mock.call('POST', '/admin/scan', await qr)
	await opened
	return { client, jid }
}
