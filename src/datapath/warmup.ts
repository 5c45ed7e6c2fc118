/**
 * datapath/warmup.ts: runs the ESP codec's hot functions on throwaway SAs at start-up, so that
 * V8 has optimised them before the first real packet arrives.
 *
 * Why: at low packet rates (a ping a second, an interactive session) the data path's functions
 * would run for minutes in V8's interpreter and baseline tiers; measured on the project machine,
 * a seal + open pair costs 100-1000 us then, against ~60 us once optimised (after an idle gap;
 * ~3 us back to back). Every hop of a round trip pays it, so it shows directly in ping RTT.
 *
 * The throwaway SAs use a random key, no sequence reserver and no replay store: nothing here
 * touches the real SAs, the disk or the network. Same classes and buffer types as the real path
 * (Buffer, OutboundSa/InboundSa, the configured AEAD implementation), so the type feedback V8
 * collects matches what real packets bring.
 */
import { randomBytes } from 'node:crypto';

import type { AeadName } from '../esp/aead.js';
import { AEAD_ALGORITHMS } from '../esp/aead.js';
import { ESP_OFFSET_PAYLOAD, ESP_MAX_OVERHEAD, openEsp, parseEspHeader, sealEsp } from '../esp/codec.js';
import { InboundSa, OutboundSa } from '../esp/sa.js';

/** WARMUP_ROUNDS is the default number of seal + open pairs per algorithm (~20-60 ms in all). */
export const WARMUP_ROUNDS = 20_000;
/** WARMUP_SLICE_ROUNDS is how many rounds the daemon runs per event-loop turn (a few ms). */
export const WARMUP_SLICE_ROUNDS = 500;
/** WARMUP_SELF_CHECK_ROUNDS is the short round trip the daemon runs before it says 'up'. */
export const WARMUP_SELF_CHECK_ROUNDS = 20;

/** WARMUP_SPI is the throwaway SAs' SPI (never on the wire). */
const WARMUP_SPI = 0x0000_0100;

/**
 * warmUpCodec seals and opens `rounds` IPv4 and IPv6 packets of mixed sizes with each
 * algorithm. Returns the number of packets that round-tripped (2 x rounds x algorithms when
 * all is well: a smaller number means the codec is broken, and the caller should say so).
 */
export function warmUpCodec(algorithms: Iterable<AeadName>, rounds = WARMUP_ROUNDS): number {
  let ok = 0;
  const sizes = [40, 84, 576, 1400];
  const buf = Buffer.alloc(1500 + ESP_MAX_OVERHEAD);
  for (const algorithm of new Set(algorithms)) {
    const keyMaterial = randomBytes(AEAD_ALGORITHMS[algorithm].keyMaterialLength);
    const out = new OutboundSa({ spi: WARMUP_SPI, algorithm, keyMaterial });
    // A window as wide as the run, so no round trip is refused as too old.
    const inn = new InboundSa({ spi: WARMUP_SPI, algorithm, keyMaterial, replayWindow: 1024 });
    for (let i = 0; i < rounds; i++) {
      for (const version of [4, 6]) {
        const len = Math.max(sizes[i % sizes.length], version === 4 ? 20 : 40);
        buf[ESP_OFFSET_PAYLOAD] = version << 4;
        const n = sealEsp(out, buf, ESP_OFFSET_PAYLOAD, len, buf, 0);
        if (typeof n !== 'number') continue;
        if (typeof parseEspHeader(buf, 0, n) === 'string') continue;
        const r = openEsp(inn, buf, 0, n);
        if (typeof r === 'object' && r.innerLen === len) ok++;
      }
    }
  }
  return ok;
}
