/**
 * daemon/control.ts: the local control socket (a Unix stream socket in stateDir, mode 0600).
 * Protocol: one JSON request line {"cmd": "..."} → one JSON response line, then close.
 * It doubles as the single-instance lock: a second daemon finds a live socket and refuses.
 */
import { createServer, connect, type Server } from 'node:net';
import { chmodSync, unlinkSync, existsSync } from 'node:fs';
import { GatewayError } from '../errors.js';

/** ControlHandler answers one request; it must not throw for unknown commands. */
export type ControlHandler = (req: { cmd: string; [k: string]: unknown }) => unknown;

const MAX_REQUEST_BYTES = 4096;
const CLIENT_TIMEOUT_MS = 3000;

/** probeControl reports whether a daemon answers on the socket (bounded by a timeout). */
export function probeControl(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    if (!existsSync(path)) { resolve(false); return; }
    const s = connect(path);
    const t = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

/**
 * listenControl binds the control socket. If another daemon answers there it throws
 * ERR_ALREADY_RUNNING and touches nothing; a stale socket file is removed first.
 */
export async function listenControl(path: string, handler: ControlHandler): Promise<Server> {
  if (await probeControl(path)) {
    throw new GatewayError('ERR_ALREADY_RUNNING', `another espgate daemon is running with this stateDir (control socket ${path} answers); stop it first or use another stateDir`);
  }
  if (existsSync(path)) unlinkSync(path);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.setTimeout(CLIENT_TIMEOUT_MS, () => sock.destroy());
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > MAX_REQUEST_BYTES) { sock.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let reply: unknown;
      try {
        const req = JSON.parse(buf.slice(0, nl)) as { cmd?: unknown };
        reply = typeof req.cmd === 'string' ? handler(req as { cmd: string }) : { error: 'missing cmd' };
      } catch (e) {
        reply = { error: (e as Error).message };
      }
      sock.end(JSON.stringify(reply) + '\n');
    });
    sock.on('error', () => sock.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (cause) => reject(new GatewayError('ERR_CONTROL', `cannot bind control socket ${path}: ${cause.message}`, { cause })));
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600);
  return server;
}

/**
 * NETNS_LOCK_NAME is the abstract Unix socket a daemon holds while it runs. Abstract sockets
 * belong to the network namespace, like the rules, routes and NFQUEUE a daemon owns, so this is
 * the one-daemon-per-namespace lock: the control socket alone is per stateDir, and a second
 * daemon with another stateDir would otherwise install over the running gate and, failing
 * later, tear it down.
 */
export const NETNS_LOCK_NAME = 'espgate/ESPGATE';

/**
 * lockNetns takes the per-namespace lock; throws ERR_ALREADY_RUNNING when another daemon holds
 * it. Returns the release function.
 */
export async function lockNetns(name = NETNS_LOCK_NAME): Promise<() => Promise<void>> {
  const server = createServer((sock) => { sock.end(`${JSON.stringify({ pid: process.pid })}\n`); });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (cause: NodeJS.ErrnoException) => {
      reject(cause.code === 'EADDRINUSE'
        ? new GatewayError('ERR_ALREADY_RUNNING', `another espgate daemon is running in this network namespace (it holds the abstract socket @${name}); one daemon per namespace owns the rules, routes and queue: stop it first`)
        : new GatewayError('ERR_CONTROL', `cannot take the namespace lock @${name}: ${cause.message}`, { cause }));
    });
    server.listen(`\0${name}`, () => { resolve(); });
  });
  return () => new Promise<void>((resolve) => { server.close(() => { resolve(); }); });
}

/** closeControl stops listening and removes the socket file. */
export async function closeControl(server: Server, path: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  try { unlinkSync(path); } catch { /* already gone */ }
}

/** requestControl sends one request and returns the parsed reply (bounded by a timeout). */
export function requestControl(path: string, req: { cmd: string; [k: string]: unknown }, timeoutMs = CLIENT_TIMEOUT_MS): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let data = '';
    const t = setTimeout(() => { s.destroy(); reject(new GatewayError('ERR_CONTROL', `no answer from the daemon on ${path} within ${timeoutMs} ms`)); }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(JSON.stringify(req) + '\n'));
    s.on('data', (c: string) => { data += c; });
    s.on('end', () => {
      clearTimeout(t);
      try { resolve(JSON.parse(data)); } catch (cause) { reject(new GatewayError('ERR_CONTROL', 'bad reply from the daemon', { cause })); }
    });
    s.on('error', (cause) => {
      clearTimeout(t);
      reject(new GatewayError('ERR_CONTROL', `cannot reach the daemon on ${path} (${cause.message}); is \`espgate up\` running with this config?`, { cause }));
    });
  });
}
