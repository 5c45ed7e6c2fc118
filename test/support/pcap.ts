/**
 * pcap.ts: a minimal classic-pcap writer for tests (tcpdump/Wireshark format, microsecond
 * timestamps, little-endian). LINKTYPE_RAW frames start with the IP header, which is what the
 * gateway handles everywhere, so captures need no fake link layer.
 *
 *   global header (24):  magic a1b2c3d4 | v2.4 | thiszone 0 | sigfigs 0 | snaplen | linktype
 *   record header (16):  ts_sec | ts_usec | incl_len | orig_len      then incl_len bytes
 */

/** LINKTYPE_RAW is "raw IP; the packet begins with an IPv4 or IPv6 header" (tcpdump.org linktypes). */
export const LINKTYPE_RAW = 101;
/** PCAP_MAGIC is the microsecond-resolution magic number. */
export const PCAP_MAGIC = 0xa1b2c3d4;
/** PCAP_SNAPLEN is the snapshot length written in the header. */
export const PCAP_SNAPLEN = 65535;

const GLOBAL_HEADER_LEN = 24;
const RECORD_HEADER_LEN = 16;

/** PcapWriter collects packets in memory and renders one pcap file. */
export class PcapWriter {
  readonly linktype: number;
  readonly #records: { sec: number; usec: number; data: Uint8Array }[] = [];

  constructor(linktype = LINKTYPE_RAW) {
    this.linktype = linktype;
  }

  /** add appends a packet (copied) with a timestamp; by default one second apart from 2024-01-01. */
  add(data: Uint8Array, tsSec = 1704067200 + this.#records.length, tsUsec = 0): void {
    if (data.length > PCAP_SNAPLEN) throw new RangeError(`packet of ${data.length} bytes exceeds the snaplen`);
    this.#records.push({ sec: tsSec, usec: tsUsec, data: Uint8Array.from(data) });
  }

  /** count is the number of packets added. */
  get count(): number {
    return this.#records.length;
  }

  /** bytes renders the file. */
  bytes(): Uint8Array {
    const total = GLOBAL_HEADER_LEN + this.#records.reduce((n, r) => n + RECORD_HEADER_LEN + r.data.length, 0);
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, PCAP_MAGIC, true);
    dv.setUint16(4, 2, true);
    dv.setUint16(6, 4, true);
    dv.setInt32(8, 0, true);
    dv.setUint32(12, 0, true);
    dv.setUint32(16, PCAP_SNAPLEN, true);
    dv.setUint32(20, this.linktype, true);
    let off = GLOBAL_HEADER_LEN;
    for (const r of this.#records) {
      dv.setUint32(off, r.sec, true);
      dv.setUint32(off + 4, r.usec, true);
      dv.setUint32(off + 8, r.data.length, true);
      dv.setUint32(off + 12, r.data.length, true);
      out.set(r.data, off + RECORD_HEADER_LEN);
      off += RECORD_HEADER_LEN + r.data.length;
    }
    return out;
  }
}
