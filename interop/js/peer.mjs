// A js-libp2p peer for interop tests: dials a meshbench node, checks Identify, exchanges
// signed gossipsub 1.1 messages with it, and then sends it one malformed message.
// Then (given a blob CID) fetches that blob over /meshbench/blocks/1.0.0: megabytes that
// cross many Yamux frames and Noise messages as py-libp2p writes them.
// Usage: node peer.mjs <multiaddr of the meshbench node> <hex of a signed object to publish>
//        [<hex of a binary blob CID to fetch>]
// Prints JSON lines: {"peer_id"}, {"agent", "protocol_version"}, {"published"}, {"received"},
// and {"blob_bytes", "blob_sha256"} with a CID.
if (!Promise.withResolvers) {
  // Node 20 lacks it; libp2p 3.x uses it.
  Promise.withResolvers = function () {
    let resolve, reject
    const promise = new Promise((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}

const { createLibp2p } = await import('libp2p')
const { tcp } = await import('@libp2p/tcp')
const { noise } = await import('@chainsafe/libp2p-noise')
const { yamux } = await import('@chainsafe/libp2p-yamux')
const { identify } = await import('@libp2p/identify')
const { gossipsub } = await import('@libp2p/gossipsub')
const { multiaddr } = await import('@multiformats/multiaddr')

const TOPIC = '/meshbench/1/tasks'
const [target, objectHex, blobCidHex] = process.argv.slice(2)
const { createHash } = await import('node:crypto')
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const deadline = setTimeout(() => { say({ error: 'timeout' }); process.exit(3) }, 45000)

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ emitSelf: false, allowPublishToZeroTopicPeers: false })
  }
})
say({ peer_id: node.peerId.toString() })

const received = new Promise((resolve) => {
  node.services.pubsub.addEventListener('message', (evt) => {
    if (evt.detail.topic === TOPIC) resolve(Buffer.from(evt.detail.data).toString('hex'))
  })
})
node.services.pubsub.subscribe(TOPIC)
const conn = await node.dial(multiaddr(target))
const remote = conn.remotePeer

// Wait for Identify and for the meshbench node's subscription.
while (true) {
  const subscribed = node.services.pubsub.getSubscribers(TOPIC).some((p) => p.equals(remote))
  let agent
  try {
    const peer = await node.peerStore.get(remote)
    agent = peer.metadata.get('AgentVersion')
    if (subscribed && agent) {
      const pv = peer.metadata.get('ProtocolVersion')
      say({
        agent: new TextDecoder().decode(agent),
        protocol_version: pv ? new TextDecoder().decode(pv) : ''
      })
      break
    }
  } catch {}
  await new Promise((r) => setTimeout(r, 50))
}

say({ published: true })
// Gossip is best effort: repeat (as new messages, same object) until the meshbench node
// answers; it ignores the copies as duplicates of an object it has.
let answer
received.then((hex) => { answer = hex })
while (answer === undefined) {
  await node.services.pubsub.publish(TOPIC, Buffer.from(objectHex, 'hex'))
  await new Promise((r) => setTimeout(r, 500))
}
say({ received: answer })
// One malformed message, sent once both ways are known to work: published before gossipsub
// had its stream to the meshbench node open, it was dropped here unsent (seen under load).
await node.services.pubsub.publish(TOPIC, Buffer.from('not dag-cbor at all'))
say({ malformed: true })

if (blobCidHex) {
  // request = uvarint(len(cid)) cid; response = 0x00 uvarint(size) bytes (see net/blocks.py)
  const cid = Buffer.from(blobCidHex, 'hex')
  const stream = await node.dialProtocol(remote, '/meshbench/blocks/1.0.0')
  stream.send(Uint8Array.from([cid.length, ...cid]))
  const parts = []
  for await (const chunk of stream) parts.push(Buffer.from(chunk.subarray()))
  const all = Buffer.concat(parts)
  let size = 0
  let shift = 0
  let pos = 1
  while (true) {
    const b = all[pos++]
    size += (b & 0x7f) * 2 ** shift
    shift += 7
    if (!(b & 0x80)) break
  }
  const body = all.subarray(pos)
  say({
    blob_status: all[0],
    blob_size: size,
    blob_bytes: body.length,
    blob_sha256: createHash('sha256').update(body).digest('hex')
  })
}
clearTimeout(deadline)
await node.stop()
process.exit(0)
