#!/usr/bin/env node
// test/run.mjs: the one test entry point. Runs the compiled tests under dist/ with node:test.
//   (default)  unit tests (no root), then, when run as root, the namespace tests one file at a time
//   --unit     unit tests only
//   --lab      namespace tests only (root)
// Namespace tests live in dist/test/{lab,io,netfilter}/; they create their own namespaces and
// skip themselves with a reason when not root. Everything else is a unit test.
// Namespace test files run two at a time (each in its own process, so each has its own run id,
// namespaces, run dir and charon sockets; most of their time is bounded waits: rekey lifetimes,
// DPD, restarts), except the EXCLUSIVE ones, which load both cores on purpose (floods, kill
// loops, the soak, eight clients) and run alone afterwards.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
const ROOT_DIRS = ['test/lab', 'test/io', 'test/netfilter'];
const EXCLUSIVE = /\/test\/lab\/(hostile|failclosed|stayup|hub)\.test\.js$/;

function walk(dir, out = []) {
  let names;
  try { names = readdirSync(dir); } catch { return out; }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (n.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const all = walk(dist).sort();
const isRootTest = (f) => ROOT_DIRS.some((d) => relative(dist, f).startsWith(d + '/'));
const unit = all.filter((f) => !isRootTest(f));
const lab = all.filter(isRootTest);
const args = new Set(process.argv.slice(2));
const wantUnit = !args.has('--lab');
const wantLab = !args.has('--unit');
const amRoot = process.getuid?.() === 0;

let failed = false;
function run(files, concurrency, env = process.env) {
  if (files.length === 0) return;
  const r = spawnSync(process.execPath, ['--test', `--test-concurrency=${concurrency}`, ...files], { stdio: 'inherit', cwd: root, env });
  if (r.status !== 0) failed = true;
}

if (wantUnit) {
  console.log(`# unit tests: ${unit.length} files`);
  run(unit, 2);
  // The ESP tests again with the node:crypto AEAD (the TypeScript reference path): the native
  // AES-GCM addon is the default, and both must pass the same vectors, fuzz and tshark checks.
  const esp = unit.filter((f) => /\/src\/esp\/|\/test\/esp-[^/]*\.test\.js$|\/test\/two-gateways\.test\.js$/.test(f));
  console.log(`# ESP tests with ESPGATE_AEAD=node (reference AEAD): ${esp.length} files`);
  run(esp, 2, { ...process.env, ESPGATE_AEAD: 'node' });
}
if (wantLab) {
  if (!amRoot) console.log('# namespace (lab) tests skipped: not root. Run `sudo npm test` to include them.');
  else {
    const shared = lab.filter((f) => !EXCLUSIVE.test(f));
    const alone = lab.filter((f) => EXCLUSIVE.test(f));
    console.log(`# namespace (lab) tests: ${shared.length} files two at a time, then ${alone.length} alone`);
    run(shared, 2);
    run(alone, 1);
  }
}
process.exitCode = failed ? 1 : 0;
