/**
 * What a process loads at startup, read from the sources' static imports (type-only ones left
 * out, as the compiler drops them). A relay or contact point process with the NATS client loaded
 * moved bulk TCP through an exposure at ~1.4x the CPU per MB (bench mediation-bulk, 3 Dec 2026),
 * so the NATS client comes in only by a dynamic import where a cluster is asked for: the relay's
 * --nats (core/cli/relay-command.ts), and the bench's cluster and anchor code.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '../..');

/** The modules `file` imports statically for their values: relative files resolved, packages by name. */
function valueImports(file: string): { files: string[]; packages: string[] } {
  const text = readFileSync(file, 'utf8');
  const files: string[] = [];
  const packages: string[] = [];
  const add = (spec: string): void => {
    if (spec.startsWith('.')) {
      const ts = resolve(dirname(file), spec.replace(/\.js$/, '.ts'));
      files.push(existsSync(ts) ? ts : resolve(dirname(file), spec));
    } else packages.push(spec);
  };
  for (const m of text.matchAll(/^(?:import|export)\s+([^;]*?)\s+from\s+'([^']+)';?$/gms)) {
    const clause = m[1]!.trim();
    if (clause.startsWith('type ')) continue;
    // `import { type A, type B } from`: every name a type, so the import goes too.
    const names = /^\{([^}]*)\}$/s.exec(clause)?.[1];
    if (names !== undefined && names.split(',').every((n) => n.trim() === '' || n.trim().startsWith('type '))) continue;
    add(m[2]!);
  }
  // A side-effect import (`import './x.js'`) loads its module too.
  for (const m of text.matchAll(/^import\s+'([^']+)';?$/gm)) add(m[1]!);
  return { files, packages };
}

/** Every package `entry` loads at startup, each with one chain of files that brings it in. */
function packagesLoadedBy(entry: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const seen = new Set<string>();
  const walk = (file: string, chain: string[]): void => {
    if (seen.has(file) || !existsSync(file)) return;
    seen.add(file);
    const here = [...chain, file.slice(root.length + 1)];
    const { files, packages } = valueImports(file);
    for (const p of packages) if (!out.has(p)) out.set(p, here);
    for (const f of files) walk(f, here);
  };
  walk(resolve(root, entry), []);
  return out;
}

describe('static imports: no NATS client in processes that do not use one', () => {
  for (const entry of ['core/cli.ts', 'bench/worker.ts']) {
    it(`${entry} loads no @nats-io package at startup`, () => {
      const loaded = packagesLoadedBy(entry);
      expect(loaded.size, `${entry}: the walk found its imports`).toBeGreaterThan(3);
      const nats = [...loaded].filter(([p]) => p.startsWith('@nats-io/')).map(([p, chain]) => `${p} via ${chain.join(' > ')}`);
      expect(nats).toEqual([]);
    });
  }

  it('sees a static import of the NATS client where there is one (the walk works)', () => {
    const loaded = packagesLoadedBy('core/relay/cluster-nats.ts');
    expect([...loaded.keys()]).toContain('@nats-io/transport-node');
  });
});
