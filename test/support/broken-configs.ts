/**
 * test/support/broken-configs.ts: the table of broken config files, shared by the parser's unit
 * test (src/config/load.test.ts: each is refused with a problem at the right path) and the
 * system-level proof (test/lab/cli-config.test.ts: `espgate up`, `rules install` and `check`
 * refuse each one inside a lab namespace, name the field, and change nothing).
 *
 * Each case starts from a valid base document (the documented EXAMPLE, alice's side) and applies
 * one edit, or replaces the whole text. A case is
 *
 *     [n, what, edit | whole text, path of the problem, what the problem's message says]
 *
 * Pure: no I/O. Add cases at the end; never renumber.
 */
import { parseDocument } from 'yaml';

/** ConfigEdit changes a parsed config document in place. */
export type ConfigEdit = (doc: Record<string, unknown>) => void;

/** BrokenConfig is one numbered case (see the file comment). */
export type BrokenConfig = readonly [n: number, what: string, edit: ConfigEdit | string, path: string, message: RegExp];

const peer = (d: Record<string, unknown>): Record<string, unknown> => (d['peers'] as Record<string, unknown>[])[0];
const sa = (d: Record<string, unknown>, dir: 'in' | 'out'): Record<string, unknown> => (peer(d)['sa'] as Record<string, Record<string, unknown>>)[dir];
const prefix = (d: Record<string, unknown>, i: number): Record<string, string> => (d['prefixes'] as Record<string, string>[])[i];
const K2 = '0x404142434445464748494a4b4c4d4e4f50515253';

/** BROKEN_CONFIGS has every case; at least 30 (the floor). */
export const BROKEN_CONFIGS: readonly BrokenConfig[] = [
  [1, 'YAML syntax error', 'peers: [', '(yaml)', /./],
  [2, 'empty file', '', 'local', /required field is missing/],
  [3, 'unknown top-level field', (d) => { d['tunnel'] = 1; }, '(top level)', /unknown field.*tunnel/],
  [4, 'unknown SA field', (d) => { sa(d, 'out')['cipher'] = 'x'; }, 'peers[0].sa.out', /unknown field.*cipher/],
  [5, 'key not hex', (d) => { sa(d, 'out')['key'] = '0xzz'; }, 'peers[0].sa.out.key', /hex/],
  [6, 'key without 0x', (d) => { sa(d, 'out')['key'] = '000102030405060708090a0b0c0d0e0f10111213'; }, 'peers[0].sa.out.key', /0x/],
  [7, 'key too short (no salt)', (d) => { sa(d, 'in')['key'] = '0x000102030405060708090a0b0c0d0e0f'; }, 'peers[0].sa.in.key', /40 hex digits.*got 32/],
  [8, 'key of AES-192 length', (d) => { sa(d, 'in')['key'] = '0x' + 'ab'.repeat(28); }, 'peers[0].sa.in.key', /got 56/],
  [9, 'SPI reserved (< 256)', (d) => { sa(d, 'out')['spi'] = 255; }, 'peers[0].sa.out.spi', /256/],
  [10, 'SPI too large', (d) => { sa(d, 'out')['spi'] = '0x1ffffffff'; }, 'peers[0].sa.out.spi', /SPI/],
  [11, 'SPI not a number', (d) => { sa(d, 'out')['spi'] = 'abc'; }, 'peers[0].sa.out.spi', /SPI/],
  [12, 'unknown algorithm', (d) => { sa(d, 'out')['aead'] = 'aes-cbc'; }, 'peers[0].sa.out.aead', /./],
  [13, 'same key both directions', (d) => { sa(d, 'in')['key'] = sa(d, 'out')['key']; }, 'peers[0].sa.in.key', /must not share a key/],
  [14, 'duplicate inbound SPI', (d) => { (d['peers'] as unknown[]).push({ ...peer(d), name: 'carol', endpoint: '198.18.0.3', protect: ['198.18.0.3/32'], sa: { out: { spi: 5000, key: K2 }, in: { spi: '0x00002001', key: '0x' + 'cd'.repeat(20) } } }); }, 'peers[1].sa.in.spi', /already used by peers\[0\]/],
  [15, 'duplicate peer name', (d) => { (d['peers'] as unknown[]).push({ ...peer(d), endpoint: '198.18.0.3', protect: ['198.18.0.3/32'], sa: { out: { spi: 5000, key: K2 }, in: { spi: 5001, key: '0x' + 'cd'.repeat(20) } } }); }, 'peers[1].name', /duplicate peer name/],
  [16, 'bad endpoint', (d) => { peer(d)['endpoint'] = '198.18.0.256'; }, 'peers[0].endpoint', /not an IPv4 or IPv6 address/],
  [17, 'endpoint inside the fake prefix', (d) => { peer(d)['endpoint'] = '198.19.0.2'; }, 'peers[0].endpoint', /inside a fake prefix/],
  [18, 'protect not CIDR', (d) => { peer(d)['protect'] = ['198.18.0.2']; }, 'peers[0].protect[0]', /CIDR/],
  [19, 'protect with host bits', (d) => { peer(d)['protect'] = ['198.18.0.2/24']; }, 'peers[0].protect[0]', /host bits/],
  [20, 'protect outside every real prefix', (d) => { peer(d)['protect'] = ['203.0.113.5/32']; }, 'peers[0].protect[0]', /not inside any prefixes\[\]\.real/],
  [21, 'protect overlapping local', (d) => { peer(d)['protect'] = ['198.18.0.0/30']; }, 'peers[0].protect[0]', /overlaps local\.protect/],
  [22, 'two peers overlapping', (d) => { (d['peers'] as unknown[]).push({ ...peer(d), name: 'carol', endpoint: '198.18.0.3', protect: ['198.18.0.2/31'], sa: { out: { spi: 5000, key: K2 }, in: { spi: 5001, key: '0x' + 'cd'.repeat(20) } } }); }, 'peers[1].protect[0]', /overlaps peers\[0\]/],
  [23, 'prefix length mismatch', (d) => { prefix(d, 0)['fake'] = '198.19.0.0/25'; }, 'prefixes[0]', /same length/],
  [24, 'prefix family mismatch', (d) => { prefix(d, 0)['fake'] = '2001:db8:0:ff02::/24'; }, 'prefixes[0]', /same address family/],
  [25, 'fake overlaps real', (d) => { prefix(d, 0)['fake'] = '198.18.0.0/24'; }, 'prefixes[0].fake', /overlaps prefixes\[0\]\.real/],
  [26, 'fake overlaps another pair', (d) => { (d['prefixes'] as unknown[]).push({ real: '198.18.1.0/24', fake: '198.19.0.0/24' }); }, 'prefixes[2].fake', /overlaps prefixes\[0\]\.fake/],
  [27, 'prefix with host bits', (d) => { prefix(d, 0)['real'] = '198.18.0.1/24'; }, 'prefixes[0].real', /host bits/],
  [28, 'local.protect inside the fake prefix', (d) => { (d['local'] as Record<string, unknown>)['protect'] = ['198.19.0.1/32']; }, 'local.protect[0]', /overlaps the fake prefix/],
  [29, 'no peers', (d) => { d['peers'] = []; }, 'peers', /./],
  [30, 'missing local', (d) => { delete d['local']; }, 'local', /required field is missing/],
  [31, 'tun name too long', (d) => { d['tun'] = { name: 'espgate-tunnel0' + 'x' }; }, 'tun.name', /1-15/],
  [32, 'tun mtu too small for IPv6', (d) => { d['tun'] = { mtu: 1000 }; }, 'tun.mtu', /./],
  [33, 'queue out of range', (d) => { d['queue'] = 70000; }, 'queue', /./],
  [34, 'mode unknown', (d) => { d['mode'] = 'router'; }, 'mode', /./],
  [35, 'replayWindow not a multiple of 32', (d) => { peer(d)['replayWindow'] = 100; }, 'peers[0].replayWindow', /multiple of 32/],
  [36, 'duplicate YAML key', 'name: a\nname: b\n', '(yaml)', /./],
];

/**
 * renderBrokenConfig returns the text of one case: the whole text when the case gives one, else
 * the base document (YAML) with `prepare` and then the case's edit applied, written as JSON
 * (JSON is YAML). `prepare` is for what the caller needs in every file (a stateDir of its own).
 */
export function renderBrokenConfig(edit: ConfigEdit | string, base: string, prepare?: ConfigEdit): string {
  if (typeof edit === 'string') return edit;
  const d = parseDocument(base).toJS() as Record<string, unknown>;
  prepare?.(d);
  edit(d);
  return JSON.stringify(d);
}
