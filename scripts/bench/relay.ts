/**
 * A bare HTTP relay for the gateway benchmark: bytes in, bytes out, nothing read, no MCP, no
 * decision, in a process of its own, written with node:http. What it adds to a call is what one
 * more HTTP hop costs on the machine when Node parses it both ways (requests and answers).
 *
 *   npx tsx scripts/bench/relay.ts <upstream URL>    # prints "relay listening on <URL>"
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

const upstream = new URL(process.argv[2] ?? '');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const relay = http.createServer((req, res) => {
  const forward = http.request(
    { host: upstream.hostname, port: upstream.port, path: upstream.pathname, method: req.method, headers: { ...req.headers, host: upstream.host }, agent },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  forward.on('error', () => res.destroy());
  req.pipe(forward);
});
relay.listen(0, '127.0.0.1', () => console.log(`relay listening on http://127.0.0.1:${(relay.address() as AddressInfo).port}${upstream.pathname}`));
process.on('SIGTERM', () => process.exit(0));
