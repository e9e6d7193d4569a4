// Starts the mock-wa binary on loopback and talks to its admin API.
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const here = path.dirname(fileURLToPath(import.meta.url))

/** The binary: MOCK_WA_BIN (the Rust test passes cargo's path), else the debug build. */
export function mockBinary() {
	return process.env.MOCK_WA_BIN || path.resolve(here, '../../../../target/debug/mock-wa')
}

/** A running mock-wa: `{ ws, admin, media, rootKey, stop(), call(method, path, body) }`. */
export async function startMock() {
	const child = spawn(mockBinary(), ['--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0'], {
		stdio: ['ignore', 'pipe', 'inherit'],
		env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'mock_wa=warn' },
	})
	const exited = new Promise((_, reject) =>
		child.once('exit', code => reject(new Error(`mock-wa exited with ${code} before printing its addresses`))),
	)
	const firstLine = new Promise(resolve => createInterface({ input: child.stdout }).once('line', resolve))
	const info = JSON.parse(await Promise.race([firstLine, exited]))
	exited.catch(() => {})
	return attachMock(info, () => child.kill('SIGKILL'))
}

/**
 * A mock-wa someone else runs (the benchmark's, in its own process), from
 * the JSON line the binary prints at start: `{ ws, admin, media, root_key }`.
 * `stop` ends it, when this process owns it.
 */
export function attachMock(info, stop = () => {}) {
	const mock = {
		ws: info.ws,
		admin: info.admin,
		media: info.media,
		rootKey: Buffer.from(info.root_key, 'base64'),
		async call(method, route, body) {
			const res = await fetch(info.admin + route, {
				method,
				body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
			})
			const json = await res.json()
			if (!res.ok) {
				throw new Error(`${method} ${route} answered ${res.status}: ${JSON.stringify(json)}`)
			}
			return json
		},
		stats() {
			return mock.call('GET', '/admin/stats')
		},
		stop,
	}
	return mock
}

/** Polls `probe` until it returns a truthy value; fails after `ms` with `what`. */
export async function eventually(what, probe, ms = 30_000) {
	const deadline = Date.now() + ms
	for (;;) {
		const value = await probe()
		if (value) {
			return value
		}
		if (Date.now() > deadline) {
			throw new Error(`timed out after ${ms} ms waiting for ${what}`)
		}
		await new Promise(resolve => setTimeout(resolve, 50))
	}
}
