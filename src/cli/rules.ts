/**
 * cli/rules.ts: `espgate rules install|remove|show`. The backend (config rules.backend:
 * iptables, nftables, or auto) is named on the first line of install and show.
 */
import type { Config } from '../config/load.js';
import { checkPrivileges, gateOps } from '../daemon/system.js';

/** rulesCommand runs one rules action and prints what it did. */
export async function rulesCommand(action: 'install' | 'remove' | 'show', cfg: Config): Promise<void> {
  checkPrivileges(); // every action reads or writes netfilter state
  const gate = gateOps();
  switch (action) {
    case 'show':
      process.stdout.write(await gate.show(cfg));
      return;
    case 'install': {
      const [backend, ...notes] = await gate.install(cfg);
      if (backend !== undefined) console.log(backend);
      for (const n of notes) console.log(`note: ${n}`);
      console.log('gate installed: traffic to protected peers goes only through the tunnel; with no daemon running it is dropped.');
      console.log('`espgate rules remove` is the only way to let cleartext through again.');
      return;
    }
    case 'remove': {
      const removed = await gate.remove(cfg);
      console.log(removed ? 'gate removed (iptables and nftables rules of ours, blackhole routes): traffic to the peers is no longer forced through the tunnel.' : 'gate was not installed; nothing to remove.');
    }
  }
}
