/**
 * interop-python.test.ts: the whole key schedule and PSK AUTH against a second implementation,
 * written from RFC 7296 §2.13-§2.18 in Python with only its standard library (hmac, hashlib).
 * The published vectors (prf.test.ts, keys.test.ts) pin SKEYSEED, prf+ and the rekey; this
 * adds the parts no published vector covers: the AES-GCM key layout, the Child SA split and
 * PSK AUTH, over random inputs of many lengths. Skipped when python3 is not installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { toHex } from '../../../test/support/vectors/load.js';
import { AEAD_ALGORITHMS, AEAD_NAMES } from '../../esp/aead.js';
import type { AeadName } from '../../esp/aead.js';
import { computePskAuth } from './auth.js';
import { computeRekeySkeyseed, computeSkeyseed, deriveChildSaKeys, deriveIkeSaKeys } from './keys.js';
import { PRF_HMAC_SHA2_256, prfPlus } from './prf.js';

const PRF = PRF_HMAC_SHA2_256;

/** PYTHON_REFERENCE reads JSON cases on stdin and prints JSON answers; RFC 7296 in Python. */
const PYTHON_REFERENCE = String.raw`
import hashlib, hmac, json, sys

def prf(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()

def prf_plus(key, seed, n):          # RFC 7296 2.13
    out, t, i = b"", b"", 1
    while len(out) < n:
        assert i <= 255
        t = prf(key, t + seed + bytes([i]))
        out += t
        i += 1
    return out[:n]

KEYLEN = {"aes128gcm16": 16, "aes192gcm16": 24, "aes256gcm16": 32}
SALT = 4                             # RFC 4106 8.1, RFC 5282 7.1

def split(buf, lengths):
    out, off = [], 0
    for n in lengths:
        out.append(buf[off:off + n])
        off += n
    return out

res = []
for c in json.load(sys.stdin):
    h = {k: bytes.fromhex(v) for k, v in c.items() if k not in ("aead", "plusLen")}
    e = KEYLEN[c["aead"]] + SALT
    skeyseed = prf(h["ni"] + h["nr"], h["gir"])                                   # 2.14
    lengths = [32, 0, 0, e, e, 32, 32]
    keys = split(prf_plus(skeyseed, h["ni"] + h["nr"] + h["spiI"] + h["spiR"], sum(lengths)), lengths)
    sk_d, sk_pi, sk_pr = keys[0], keys[5], keys[6]
    child = split(prf_plus(sk_d, h["cni"] + h["cnr"], 2 * e), [e, e])             # 2.17
    pfs = split(prf_plus(sk_d, h["girNew"] + h["cni"] + h["cnr"], 2 * e), [e, e])
    rekey = prf(sk_d, h["girNew"] + h["cni"] + h["cnr"])                          # 2.18
    def auth(msg, nonce, sk_p, idp):                                              # 2.15
        return prf(prf(h["psk"], b"Key Pad for IKEv2"), msg + nonce + prf(sk_p, idp))
    res.append({
        "plus": prf_plus(h["plusKey"], h["plusSeed"], c["plusLen"]).hex(),
        "skeyseed": skeyseed.hex(),
        "keys": [k.hex() for k in keys],
        "child": [k.hex() for k in child],
        "pfs": [k.hex() for k in pfs],
        "rekey": rekey.hex(),
        "authI": auth(h["msg1"], h["nr"], sk_pi, h["idI"]).hex(),
        "authR": auth(h["msg2"], h["ni"], sk_pr, h["idR"]).hex(),
    })
json.dump(res, sys.stdout)
`;

/** hasPython3 reports whether a python3 binary runs here. */
function hasPython3(): boolean {
  const r = spawnSync('python3', ['-c', 'import hmac, hashlib, json'], { timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

interface Case {
  aead: AeadName; plusLen: number;
  ni: string; nr: string; gir: string; spiI: string; spiR: string; girNew: string; cni: string; cnr: string;
  psk: string; msg1: string; msg2: string; idI: string; idR: string; plusKey: string; plusSeed: string;
}
interface Answer {
  plus: string; skeyseed: string; keys: string[]; child: string[]; pfs: string[]; rekey: string; authI: string; authR: string;
}

const rnd = (n: number): string => randomBytes(n).toString('hex');

test('interop: key schedule and PSK AUTH agree with a Python implementation of RFC 7296', { skip: !hasPython3() && 'python3 not installed' }, () => {
  // Lengths cover the edges: nonces 16 (minimum), 32 and 256 (maximum) octets; g^ir 32 (X25519,
  // P-256 x), 256 (MODP-2048); prf+ outputs of 0, 1, one block, one block + 1, 255 blocks.
  const nonceLens = [16, 17, 32, 64, 255, 256];
  const girLens = [32, 32, 256, 32, 384, 32];
  const plusLens = [0, 1, 32, 33, 8160, 100];
  const cases: Case[] = nonceLens.map((nl, i) => ({
    aead: AEAD_NAMES[i % AEAD_NAMES.length] ?? 'aes128gcm16',
    plusLen: plusLens[i] ?? 1,
    ni: rnd(nl), nr: rnd(nonceLens[(i + 2) % nonceLens.length] ?? 32),
    gir: rnd(girLens[i] ?? 32), spiI: rnd(8), spiR: rnd(8), girNew: rnd(girLens[(i + 1) % girLens.length] ?? 32),
    cni: rnd(32), cnr: rnd(16 + i),
    psk: rnd(randomInt(0, 100)), msg1: rnd(randomInt(28, 1500)), msg2: rnd(randomInt(28, 1500)),
    idI: '02000000' + rnd(randomInt(1, 40)), idR: '01000000c0000202',
    plusKey: rnd(randomInt(0, 100)), plusSeed: rnd(randomInt(0, 300)),
  }));
  const r = spawnSync('python3', ['-c', PYTHON_REFERENCE], { input: JSON.stringify(cases), encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, `python3 failed: ${r.stderr}`);
  const answers = JSON.parse(r.stdout) as Answer[];
  assert.equal(answers.length, cases.length);

  for (const [i, c] of cases.entries()) {
    const label = `case ${i + 1} (${c.aead}, Ni ${c.ni.length / 2} octets, g^ir ${c.gir.length / 2})`;
    const want = answers[i];
    if (want === undefined) assert.fail(label);
    const b = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
    assert.equal(toHex(prfPlus(PRF, b(c.plusKey), b(c.plusSeed), c.plusLen)), want.plus, `${label}: prf+ ${c.plusLen}`);

    const input = { ni: b(c.ni), nr: b(c.nr), spiI: b(c.spiI), spiR: b(c.spiR) };
    const skeyseed = computeSkeyseed(PRF, input, b(c.gir));
    assert.equal(toHex(skeyseed), want.skeyseed, `${label}: SKEYSEED`);
    const encr = AEAD_ALGORITHMS[c.aead].keyMaterialLength;
    const k = deriveIkeSaKeys(PRF, skeyseed, input, encr);
    assert.deepEqual([k.skD, k.skAi, k.skAr, k.skEi, k.skEr, k.skPi, k.skPr].map(toHex), want.keys, `${label}: SK_*`);

    const childNonces = { ni: b(c.cni), nr: b(c.cnr) };
    const child = deriveChildSaKeys(PRF, k.skD, childNonces, encr);
    assert.deepEqual([child.initiatorToResponder, child.responderToInitiator].map(toHex), want.child, `${label}: KEYMAT`);
    const pfs = deriveChildSaKeys(PRF, k.skD, childNonces, encr, b(c.girNew));
    assert.deepEqual([pfs.initiatorToResponder, pfs.responderToInitiator].map(toHex), want.pfs, `${label}: KEYMAT with PFS`);
    assert.equal(toHex(computeRekeySkeyseed(PRF, k.skD, b(c.girNew), childNonces)), want.rekey, `${label}: SKEYSEED rekey`);

    const authI = computePskAuth(PRF, { sharedSecret: b(c.psk), realMessage: b(c.msg1), peerNonce: input.nr, skP: k.skPi, restOfIdPayload: b(c.idI) });
    const authR = computePskAuth(PRF, { sharedSecret: b(c.psk), realMessage: b(c.msg2), peerNonce: input.ni, skP: k.skPr, restOfIdPayload: b(c.idR) });
    assert.equal(toHex(authI), want.authI, `${label}: initiator AUTH`);
    assert.equal(toHex(authR), want.authR, `${label}: responder AUTH`);
  }
});
