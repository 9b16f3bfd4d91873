// A js-libp2p peer for the interop test: dials a MAGNET node, waits for one gossip message on
// /magnet/1/tasks, decodes it per docs/PROTOCOL.md, then fetches a public blob over
// /magnet/blob/1.0.0. Prints one JSON line per step on stdout.
//
// Usage: node peer.mjs <multiaddr of the node> <blob sha256> <blob size>
import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'

// Node.js 20 lacks Promise.withResolvers (Node 22 has it); libp2p 3 calls it at run time.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const [target, blobHash, blobSizeText] = process.argv.slice(2)
const blobSize = Number(blobSizeText)
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function varint (n) {
  const out = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Uint8Array.from(out)
}

function frame (bytes) {
  const prefix = varint(bytes.length)
  const out = new Uint8Array(prefix.length + bytes.length)
  out.set(prefix, 0); out.set(bytes, prefix.length)
  return out
}

// Reads a libp2p stream as: one length-prefixed JSON header, then raw bytes.
class Reader {
  constructor (stream) { this.it = stream[Symbol.asyncIterator](); this.buf = Buffer.alloc(0) }
  async fill (n) {
    while (this.buf.length < n) {
      const { value, done } = await this.it.next()
      if (done) throw new Error(`stream ended after ${this.buf.length} of ${n} bytes`)
      const chunk = value.subarray ? value.subarray() : value
      this.buf = Buffer.concat([this.buf, Buffer.from(chunk)])
    }
  }
  async take (n) { await this.fill(n); const out = this.buf.subarray(0, n); this.buf = this.buf.subarray(n); return out }
  async varint () {
    let value = 0; let shift = 0
    for (let i = 0; i < 9; i++) {
      const byte = (await this.take(1))[0]
      value += (byte & 0x7f) * 2 ** shift; shift += 7
      if (!(byte & 0x80)) return value
    }
    throw new Error('varint too long')
  }
  async json () { const n = await this.varint(); if (n > 4096) throw new Error('header too big'); return JSON.parse((await this.take(n)).toString('utf8')) }
}

async function fetchBlob (node, peer) {
  const stream = await node.dialProtocol(peer, '/magnet/blob/1.0.0')
  const header = { hash: blobHash, length: blobSize, offset: 0, op: 'get' }
  stream.send(frame(Buffer.from(JSON.stringify(header), 'utf8')))
  const reader = new Reader(stream)
  const answer = await reader.json()
  if (!answer.ok) throw new Error(`refused: ${answer.error}`)
  const digest = createHash('sha256')
  let left = answer.length
  while (left > 0) {
    const chunk = await reader.take(Math.min(left, 65536))
    digest.update(chunk); left -= chunk.length
  }
  await stream.close()
  return { size: answer.size, sha256: digest.digest('hex') }
}

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
})
const timer = setTimeout(() => { say({ step: 'timeout' }); process.exit(2) }, 60000)
const got = new Promise((resolve) => {
  node.services.pubsub.addEventListener('message', (evt) => {
    if (evt.detail.topic === '/magnet/1/tasks') resolve(evt.detail)
  })
})
node.services.pubsub.subscribe('/magnet/1/tasks')
const conn = await node.dial(multiaddr(target))
say({ step: 'connected', self: node.peerId.toString(), remote: conn.remotePeer.toString(), encryption: conn.encryption, muxer: conn.multiplexer })
const message = await got
const envelope = JSON.parse(new TextDecoder().decode(message.data))  // docs/PROTOCOL.md: canonical JSON
say({ step: 'message', from: message.from?.toString(), type: envelope.type, v: envelope.v, body: envelope.body, sigLength: envelope.sig.length })
say({ step: 'blob', ...(await fetchBlob(node, conn.remotePeer)) })
clearTimeout(timer)
await node.stop()
process.exit(0)
