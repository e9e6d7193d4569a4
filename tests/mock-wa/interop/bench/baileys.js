// Baileys' side of `make bench` (benches/walink/baileys.rs runs it against
// the bench's own mock-wa): sessions of an unmodified Baileys 7 client, all
// in this one process as a Baileys server holds its accounts, paired with
// the mock's phone; the process's resident memory once they are idle; then
// send runs, each spreading its messages round robin over some sessions from
// a number of concurrent senders that each wait for the server's ack of one
// message before the next, as the walinkd side's IPC clients do. Prints one
// JSON line on stdout.
//
// Environment:
// - MOCK_WA_INFO: the mock's address line, as the mock-wa binary prints it
//   (`{"ws","admin","media","root_key"}`).
// - BENCH_SESSIONS: sessions to pair (default 1).
// - BENCH_IDLE_SECS: seconds to let the post-login work settle before the
//   memory reading (default 15).
// - BENCH_PAIR_CONCURRENCY: sessions paired at once (default 16).
// - BENCH_WARMUP: messages sent one at a time from the first session before
//   the runs (default 0).
// - BENCH_SEND_RUNS: `sessions:senders` pairs, comma separated, one send run
//   each (default none).
// - BENCH_SEND_BURST: messages in each run (default 4000).
// - BENCH_RECIPIENT: the contact's phone number, digits only.
import { generateMessageIDV2 } from 'baileys'
import { pairedClient } from '../lib/client.js'
import { attachMock } from '../lib/mock.js'

const int = (name, fallback) => {
	const value = process.env[name]
	if (value === undefined || value === '') {
		return fallback
	}
	const n = Number(value)
	if (!Number.isInteger(n) || n < 0) {
		throw new Error(`${name}=${value}: expected a whole number`)
	}
	return n
}

const rssBytes = () => process.memoryUsage.rss()

// libsignal logs its session changes with console.log; stdout is for the
// result line alone.
console.log = console.error
console.info = console.error

/** User plus system CPU time this process has used, in milliseconds. */
const cpuMs = () => {
	const { user, system } = process.cpuUsage()
	return (user + system) / 1000
}

/** Runs `task(i)` for i in 0..count with at most `width` at once. */
async function gated(count, width, task) {
	let next = 0
	const worker = async () => {
		for (let i = next++; i < count; i = next++) {
			await task(i)
		}
	}
	await Promise.all(Array.from({ length: Math.min(width, count) }, worker))
}

/**
 * The server's ack of each message id, as Baileys hands the raw stanza to
 * `sock.ws` listeners (its own ack handler only reports error acks).
 */
class Acks {
	constructor() {
		this.waiting = new Map()
	}

	watch(sock) {
		sock.ws.on('CB:ack,class:message', node => {
			const waiter = this.waiting.get(node.attrs.id)
			if (waiter) {
				this.waiting.delete(node.attrs.id)
				waiter(node)
			}
		})
	}

	/** Resolves at the ack of `id`; register before sending, so no ack is missed. */
	of(id, ms = 60_000) {
		return new Promise((resolve, reject) => {
			const timer = setTimeout(() => {
				this.waiting.delete(id)
				reject(new Error(`no server ack of ${id} within ${ms} ms`))
			}, ms)
			this.waiting.set(id, node => {
				clearTimeout(timer)
				if (node.attrs.error) {
					reject(new Error(`the server refused ${id}: error ${node.attrs.error}`))
				} else {
					resolve()
				}
			})
		})
	}
}

/** Sends one text from `client` and waits for its server ack; returns the time it took (ms). */
async function sendOne(acks, client, to, text) {
	const messageId = generateMessageIDV2(client.sock.user?.id)
	const acked = acks.of(messageId)
	const start = performance.now()
	await client.sock.sendMessage(to, { text }, { messageId })
	await acked
	return performance.now() - start
}

async function sendRun(acks, clients, to, burst, senders, tag) {
	const latencies = []
	const cpuBefore = cpuMs()
	const start = performance.now()
	await gated(burst, senders, async i => {
		latencies.push(await sendOne(acks, clients[i % clients.length], to, `${tag}${i}`))
	})
	const secs = (performance.now() - start) / 1000
	return {
		sessions: clients.length,
		senders,
		sends: burst,
		cpu_ms_per_message: (cpuMs() - cpuBefore) / burst,
		msg_per_s: burst / secs,
		latencies_ms: latencies,
	}
}

async function main() {
	if (!process.env.MOCK_WA_INFO) {
		throw new Error('MOCK_WA_INFO is not set: pass the mock-wa address line ({"ws","admin","media","root_key"})')
	}
	const mock = attachMock(JSON.parse(process.env.MOCK_WA_INFO))
	const sessions = int('BENCH_SESSIONS', 1)
	const recipient = process.env.BENCH_RECIPIENT
	if (!/^\d+$/.test(recipient ?? '')) {
		throw new Error(`BENCH_RECIPIENT=${recipient}: expected the contact's phone number, digits only`)
	}
	const to = `${recipient}@s.whatsapp.net`
	const runs = (process.env.BENCH_SEND_RUNS ?? '')
		.split(',')
		.filter(r => r.trim())
		.map(r => {
			const [k, senders] = r.split(':').map(Number)
			if (!(k >= 1 && k <= sessions && senders >= 1)) {
				throw new Error(`BENCH_SEND_RUNS: ${r}: expected sessions:senders, with 1 ≤ sessions ≤ ${sessions}`)
			}
			return { k, senders }
		})

	const rssBefore = rssBytes()
	const pairStart = performance.now()
	const clients = new Array(sessions)
	await gated(sessions, int('BENCH_PAIR_CONCURRENCY', 16), async i => {
		clients[i] = (await pairedClient(mock)).client
	})
	const pairSecs = (performance.now() - pairStart) / 1000
	const acks = new Acks()
	for (const client of clients) {
		acks.watch(client.sock)
	}
	// Pairing ends with a close (515, restart required) and a new login.
	const closes = () => clients.reduce((sum, c) => sum + c.closes.length, 0)
	const closedWhilePairing = closes()
	await new Promise(resolve => setTimeout(resolve, int('BENCH_IDLE_SECS', 15) * 1000))
	const rss = rssBytes()

	const warmup = []
	for (let i = 0; i < int('BENCH_WARMUP', 0); i++) {
		warmup.push(await sendOne(acks, clients[0], to, `s${i}`))
	}
	const burst = int('BENCH_SEND_BURST', 4000)
	const sendRuns = []
	for (const { k, senders } of runs) {
		sendRuns.push(await sendRun(acks, clients.slice(0, k), to, burst, senders, 'b'))
	}
	const reconnects = closes() - closedWhilePairing
	if (reconnects > 0) {
		throw new Error(`${reconnects} socket(s) closed during the run: the figures would include reconnects`)
	}
	await Promise.all(clients.map(c => c.remove()))
	const result = JSON.stringify({
		sessions,
		pair_secs: pairSecs,
		rss_before_pairing_bytes: rssBefore,
		rss_bytes: rss,
		warmup_ms: warmup,
		runs: sendRuns,
	})
	// A pipe takes 64 KiB at once: process.exit() right after the write
	// cut three runs' latencies off at 128 KiB.
	await new Promise(resolve => process.stdout.write(`${result}\n`, resolve))
}

main().then(
	() => process.exit(0),
	err => {
		console.error(`bench/baileys.js: ${err.stack ?? err}`)
		process.exit(1)
	},
)
