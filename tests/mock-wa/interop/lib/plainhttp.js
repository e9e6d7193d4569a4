// How Baileys reaches mock-wa's media host. The mock advertises its loopback
// `IP:PORT` in `media_conn` and Baileys builds `https://IP:PORT/...` URLs
// from it; the mock has no TLS, so both go in through Baileys' own settings
// and speak plain HTTP to that address: `fetchAgent` (uploads, Node's https
// module) and a fetch `dispatcher` (downloads). Nothing in Baileys changes.
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'

/** An https agent whose connections are plain TCP: for `fetchAgent`. */
export function plainHttpsAgent() {
	const agent = new https.Agent({ keepAlive: false })
	agent.createConnection = (options, callback) => {
		const socket = net.connect(options.port, options.host)
		callback?.(null, socket)
		return socket
	}
	return agent
}

function headerPairs(headers) {
	if (!headers) {
		return []
	}
	if (Array.isArray(headers)) {
		return Array.isArray(headers[0]) ? headers : headers.reduce((acc, v, i) => (i % 2 ? acc : [...acc, [v, headers[i + 1]]]), [])
	}
	return Object.entries(headers)
}

/**
 * A fetch `dispatcher` (the undici Dispatcher interface Node's fetch takes)
 * that sends each request as plain HTTP to the origin's host and port.
 */
export function plainDispatcher() {
	return {
		dispatch(opts, handler) {
			const origin = new URL(opts.origin)
			const req = http.request({
				host: origin.hostname,
				port: origin.port,
				path: opts.path,
				method: opts.method,
				headers: Object.fromEntries(headerPairs(opts.headers)),
			})
			handler.onConnect?.(err => req.destroy(err))
			req.on('response', res => {
				const raw = res.rawHeaders.map(h => Buffer.from(h))
				if (handler.onHeaders(res.statusCode, raw, () => res.resume(), res.statusMessage) === false) {
					res.pause()
				}
				res.on('data', chunk => {
					if (handler.onData(chunk) === false) {
						res.pause()
					}
				})
				res.on('end', () => handler.onComplete([]))
				res.on('error', err => handler.onError(err))
			})
			req.on('error', err => handler.onError(err))
			if (opts.body && typeof opts.body !== 'string' && !Buffer.isBuffer(opts.body) && opts.body[Symbol.asyncIterator]) {
				;(async () => {
					for await (const chunk of opts.body) {
						req.write(chunk)
					}
					req.end()
				})().catch(err => req.destroy(err))
			} else {
				req.end(opts.body ?? undefined)
			}
			return true
		},
	}
}
