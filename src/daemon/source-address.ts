/**
 * daemon/source-address.ts: which of our addresses the kernel would use towards a peer, found
 * by connecting a UDP socket (nothing is sent): the identity and NAT-detection address of IKE.
 */
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';

/** SOURCE_PROBE_PORT is the port named in the connect(); no datagram is ever sent to it. */
const SOURCE_PROBE_PORT = 500;
/** SOURCE_PROBE_TIMEOUT_MS bounds the lookup. */
const SOURCE_PROBE_TIMEOUT_MS = 2000;

/** sourceTowards returns the source address of the route to `addr`, or undefined (no route). */
export function sourceTowards(addr: string): Promise<string | undefined> {
  const s = createSocket(isIP(addr) === 6 ? 'udp6' : 'udp4');
  return new Promise<string | undefined>((resolve) => {
    const done = (a: string | undefined): void => { clearTimeout(t); try { s.close(); } catch { /* closed */ } resolve(a); };
    const t = setTimeout(() => { done(undefined); }, SOURCE_PROBE_TIMEOUT_MS);
    s.once('error', () => { done(undefined); });
    s.connect(SOURCE_PROBE_PORT, addr, () => {
      try { done(s.address().address); } catch { done(undefined); }
    });
  });
}
