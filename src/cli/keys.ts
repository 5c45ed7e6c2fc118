/**
 * cli/keys.ts: the configured SAs as Wireshark `esp_sa` UAT lines, so that an operator can
 * decrypt a capture:  tshark -r cap.pcap -o esp.enable_encryption_decode:TRUE \
 *                       -o "uat:esp_sa:<one line>" ...   (or save them as ~/.config/wireshark/esp_sa)
 */
import { isIP } from 'node:net';
import type { Config } from '../config/load.js';
import { spawnRunner } from '../netfilter/runner.js';

/** ESP_SA_GCM16 is Wireshark's name for AES-GCM with a 16-byte ICV (packet-esp.c). */
export const ESP_SA_GCM16 = 'AES-GCM with 16 octet ICV [RFC4106]';

/** espSaLine renders one SA in the esp_sa UAT format (fields in Wireshark's order). */
export function espSaLine(src: string, dst: string, spi: number, key: Buffer): string {
  const proto = isIP(src) === 6 ? 'IPv6' : 'IPv4';
  const q = (s: string): string => `"${s}"`;
  return [q(proto), q(src), q(dst), q(`0x${spi.toString(16).padStart(8, '0')}`), q(ESP_SA_GCM16), q(`0x${key.toString('hex')}`), q('NULL'), q('')].join(',');
}

async function localAddressTowards(addr: string): Promise<string> {
  const r = await spawnRunner().run('ip', ['-j', isIP(addr) === 6 ? '-6' : '-4', 'route', 'get', addr], undefined, 5000);
  try {
    const routes = JSON.parse(r.stdout) as { prefsrc?: string }[];
    return routes[0]?.prefsrc ?? 'any';
  } catch {
    return 'any';
  }
}

/**
 * espSaLines lists both directions of every static SA of the config. (The SAs that IKE
 * negotiates exist only in the running daemon: `espgate keys` asks it for those.)
 */
export async function espSaLines(cfg: Config, local?: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of cfg.peers) {
    if (p.sa === undefined) continue;
    const me = local ?? (await localAddressTowards(p.endpoint));
    out.push(espSaLine(me, p.endpoint, p.sa.out.spi, p.sa.out.key));
    out.push(espSaLine(p.endpoint, me, p.sa.in.spi, p.sa.in.key));
  }
  return out;
}
