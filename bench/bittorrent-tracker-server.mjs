// bittorrent-tracker's WebSocket server (npm, the WebTorrent reference
// tracker), as `make bench-trackers` runs it beside `peercdn serve`:
// WebSocket only, no stats page. Usage: node bittorrent-tracker-server.mjs PORT
import Server from 'bittorrent-tracker/server'

const port = Number(process.argv[2] || 8000)
const server = new Server({ udp: false, http: false, ws: true, stats: false, trustProxy: false })
server.on('error', (err) => console.error('error', err.message))
server.on('warning', () => {}) // bad requests from the load generator are expected
server.listen(port, '127.0.0.1', () => console.log('listening', port))
