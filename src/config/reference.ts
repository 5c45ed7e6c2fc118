/**
 * config/reference.ts: renders docs/config.md from the zod schema (its JSON Schema form), so the
 * reference cannot drift from what the parser accepts. `node dist/src/config/reference.js`
 * prints it; src/config/reference.test.ts fails when docs/config.md differs.
 */
import { z } from 'zod';
import { configSchema } from './schema.js';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  enum?: unknown[];
  default?: unknown;
  anyOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (s.anyOf) return s.anyOf.map(typeOf).join(' or ');
  if (s.type === 'array' && s.items) return `list of ${typeOf(s.items)}`;
  if (Array.isArray(s.type)) return s.type.join(' or ');
  return s.type ?? 'value';
}

function rows(s: JsonSchema, path: string, out: string[]): void {
  const props = s.properties ?? (s.type === 'array' ? s.items?.properties : undefined);
  const req = new Set(s.required ?? (s.type === 'array' ? s.items?.required : undefined) ?? []);
  if (props === undefined) return;
  for (const [k, v] of Object.entries(props)) {
    const p = s.type === 'array' ? `${path}[].${k}` : path === '' ? k : `${path}.${k}`;
    const dflt = v.default === undefined ? '' : `\`${JSON.stringify(v.default)}\``;
    const range = v.minimum !== undefined || v.maximum !== undefined ? ` (${v.minimum ?? ''}..${v.maximum ?? ''})` : '';
    out.push(`| \`${p}\` | ${typeOf(v)}${range} | ${req.has(k) && v.default === undefined ? 'yes' : ''} | ${dflt} | ${(v.description ?? '').replace(/\|/g, '\\|')} |`);
    if (v.properties) rows(v, p, out);
    if (v.type === 'array' && v.items?.properties) rows(v, p, out);
  }
}

/** renderReference returns the Markdown of docs/config.md. */
export function renderReference(): string {
  const js = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const out: string[] = [
    '# Config reference',
    '',
    '<!-- Generated from src/config/schema.ts by `node dist/src/config/reference.js > docs/config.md`. Do not edit. -->',
    '',
    'One YAML file per host. Unknown fields are errors; every error names its path and line.',
    'Semantic checks on top of these types: prefixes have no host bits set; a real and its fake',
    'prefix have the same family and length; no real or fake prefix overlaps another; each',
    'peer\'s protected prefixes lie inside a real prefix and overlap no other peer\'s or ours;',
    'inbound SPIs are unique; an SA\'s inbound and outbound keys differ.',
    '',
    '| field | type | required | default | meaning |',
    '|---|---|---|---|---|',
  ];
  rows(js, '', out);
  out.push('', '## Example: IKEv2 (the default `espgate init` writes)', '', '```yaml', EXAMPLE_IKE.trim(), '```', '');
  out.push('', '## Example: static SAs (tests and debugging)', '', '```yaml', EXAMPLE.trim(), '```', '');
  return out.join('\n');
}

/** EXAMPLE is a complete two-host config (alice's side); src/config tests parse it. */
export const EXAMPLE = `
name: alice
mode: host
tun: { name: eg0 }
queue: 0
stateDir: /var/lib/espgate
local:
  protect: [198.18.0.1/32, "2001:db8:0:1::1/128"]
prefixes:
  - { real: 198.18.0.0/24, fake: 198.19.0.0/24 }
  - { real: "2001:db8:0:1::/64", fake: "2001:db8:0:ff01::/64" }
peers:
  - name: bob
    endpoint: 198.18.0.2
    protect: [198.18.0.2/32, "2001:db8:0:1::2/128"]
    sa:
      out: { spi: "0x00001002", aead: aes-gcm-16, key: "0x000102030405060708090a0b0c0d0e0f10111213" }
      in:  { spi: "0x00002001", aead: aes-gcm-16, key: "0x202122232425262728292a2b2c2d2e2f30313233" }
`;

/** EXAMPLE_IKE is alice's side of a two-host setup keyed by IKEv2 with a pre-shared key. */
export const EXAMPLE_IKE = `
name: alice
local:
  protect: [198.18.0.1/32]
prefixes:
  - { real: 198.18.0.0/24, fake: 198.19.0.0/24 }
peers:
  - name: bob
    endpoint: 198.18.0.2
    protect: [198.18.0.2/32]
    ike:
      pskFile: /etc/espgate/bob.psk     # one line, mode 0600; or psk: "..." inline
      # localId: 198.18.0.1             # default: our address towards the peer
      # remoteId: 198.18.0.2            # default: the peer's endpoint
      # ikeProposals: [aes256gcm16-prfsha256-x25519, aes256gcm16-prfsha256-ecp256]
      # espProposals: [aes256gcm16, aes128gcm16]
      # pfs: true
      # dpdDelay: 30
      # childLifetime: 3600
`;

if (process.argv[1] !== undefined && import.meta.url.endsWith(process.argv[1].replace(/^.*\/dist\//, '/dist/'))) {
  process.stdout.write(renderReference());
}
