// A second `wrangler dev` worker beside the stack's edge, as another Cloudflare location
// would be: its own process and isolates, the stack's origin and secrets, and the same
// room objects, reached through wrangler's dev registry (the stack's edge runs with
// WRANGLER_REGISTRY_PATH=<stack>/wrangler-registry; a shared --persist-to would give each
// process its own copy of an object, see docs/room.md).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { root, stackDir, eventually } from './stack.mjs';

const freePort = () => new Promise((resolve, reject) => {
  const s = createServer();
  s.once('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

/** The top-level [vars] of wrangler.toml, as strings. */
function localVars() {
  const toml = readFileSync(join(root, 'wrangler.toml'), 'utf8');
  const section = toml.split(/^\[vars\]$/m)[1].split(/^\[/m)[0];
  return Object.fromEntries([...section.matchAll(/^([A-Z_]+) = "([^"]*)"$/gm)].map((m) => [m[1], m[2]]));
}

/**
 * Starts a second worker named `name` with the top level's vars and `vars` over them;
 * answers `{url, stop}`.
 */
export async function startSecondEdge(name, vars) {
  const dir = mkdtempSync(join(tmpdir(), 'flashgate-edge-b-'));
  const port = await freePort();
  const all = { ...localVars(), ...vars };
  const config = [
    `name = "${name}"`,
    `main = "${root}edge/build/index.js"`,
    'compatibility_date = "2026-11-01"',
    `[assets]\ndirectory = "${root}static"\nbinding = "ASSETS"`,
    '[vars]',
    ...Object.entries(all).map(([k, v]) => `${k} = "${v}"`),
    '[[ratelimits]]\nname = "PURCHASE_LIMITER"\nnamespace_id = "1001"\nsimple = { limit = 10, period = 10 }',
    '[[ratelimits]]\nname = "TICKET_LIMITER"\nnamespace_id = "1002"\nsimple = { limit = 100, period = 10 }',
    // The room objects live in the stack's worker: reach them there.
    '[[durable_objects.bindings]]\nname = "ROOM"\nclass_name = "Room"\nscript_name = "flashgate-edge-local"',
  ].join('\n');
  writeFileSync(join(dir, 'wrangler.toml'), `${config}\n`);
  const child = spawn('bash', ['-c', `. infra/edge/env.sh && exec wrangler dev --config '${dir}/wrangler.toml' --local --ip 127.0.0.1 --port ${port} --persist-to '${dir}/state' --show-interactive-dev-session=false --log-level warn --env-file '${stackDir}/edge.vars'`], {
    cwd: root,
    env: { ...process.env, WRANGLER_REGISTRY_PATH: join(stackDir, 'wrangler-registry') },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  const url = `http://127.0.0.1:${port}`;
  const stop = () => {
    try { process.kill(-child.pid, 'SIGTERM'); } catch { /* already gone */ }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await eventually(`the second edge on ${url}`, 120_000, async () => {
      if (child.exitCode !== null) throw new Error(`the second edge exited: ${log}`);
      try { return (await fetch(`${url}/`)).ok; } catch { return false; }
    }, 500);
  } catch (e) {
    stop();
    throw e;
  }
  return { url, stop, log: () => log };
}
