// Offline validation of deploy/ (no cluster and no Docker engine run here; docs/kubernetes.md
// says what is and is not checked):
// - every object in deploy/kubernetes/*.yaml validates against the Kubernetes schemas of npm
//   `kubernetes-models` (required fields, types, formats), and type-checks against the same
//   package's TypeScript types, which also catches misspelt fields (the schemas allow unknown
//   ones); each check is shown to fail on a broken copy;
// - what the manifests must say: rolling update without unavailability, probes on /healthz,
//   a preStop and grace period that cover fezz's drain, `fezz serve` arguments that the real
//   CLI parser accepts, the admin port reachable only from labelled pods, and so on;
// - the ConfigMap variant's functions load with fezz's own manifest loader;
// - deploy/Dockerfile: multi-stage, production-only install, non-root numeric USER, a
//   HEALTHCHECK whose command is run against real HTTP servers here, no secret in the image;
// - where `kubectl` is installed: each file round-trips through `kubectl annotate --local`
//   (kubectl's own YAML decoding agrees with the parser here) and `kubectl kustomize` renders
//   the kustomization. Without kubectl those two tests are skipped, the rest always run.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { serveCommand } from '../../src/cli/commands/serve.js';
import { loadFunctionDir } from '../../src/manifest/load.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const K8S_DIR = path.join(ROOT, 'deploy', 'kubernetes');

// ---------------------------------------------------------------------------------------------
// A YAML reader for the block style the manifests are written in: mappings, sequences (also at
// their key's indentation), plain/single/double-quoted scalars, flow sequences of scalars, `{}`
// and `[]`, `|`/`|-` block scalars, comments, `---`. Anything else (anchors, tags, `>`, flow
// mappings, tabs) is an error, and so is a plain scalar YAML 1.1 would read differently from
// YAML 1.2 (yes/no/on/off): Kubernetes reads YAML 1.1, so `0440` is octal here too. Where
// kubectl exists, a test below compares this reader's output with kubectl's for every file.

type Yaml = null | boolean | number | string | Yaml[] | { [key: string]: Yaml };

/** Parse a multi-document YAML text; empty documents (comments only) are dropped. */
export function parseYamlDocuments(text: string, file = '<yaml>'): Yaml[] {
  const docs: string[][] = [[]];
  for (const line of text.split('\n')) {
    if (/^---\s*(#.*)?$/.test(line)) docs.push([]);
    else docs[docs.length - 1]!.push(line.replace(/\r$/, ''));
  }
  const out: Yaml[] = [];
  for (const lines of docs) {
    const p = new BlockParser(lines, file);
    const v = p.document();
    if (v !== undefined) out.push(v);
  }
  return out;
}

class BlockParser {
  #i = 0;
  constructor(private readonly lines: string[], private readonly file: string) {}

  document(): Yaml | undefined {
    const j = this.#peek();
    if (j === -1) return undefined;
    const v = this.#node(this.#indent(j));
    if (this.#peek() !== -1) this.#fail(this.#peek(), 'unexpected content');
    return v;
  }

  #fail(j: number, why: string): never {
    throw new Error(`${this.file}:${j + 1}: ${why}: ${JSON.stringify(this.lines[j])}`);
  }

  /** Index of the next line with content (not blank, not only a comment), or -1. */
  #peek(): number {
    for (let j = this.#i; j < this.lines.length; j++) {
      const l = this.lines[j]!;
      if (/\t/.test(l.slice(0, l.length - l.trimStart().length))) this.#fail(j, 'tab in indentation');
      if (l.trim() !== '' && !l.trimStart().startsWith('#')) return j;
    }
    return -1;
  }

  #indent(j: number): number { const l = this.lines[j]!; return l.length - l.trimStart().length; }
  #isItem(j: number): boolean { const t = this.lines[j]!.trimStart(); return t === '-' || t.startsWith('- '); }

  #node(indent: number): Yaml {
    const j = this.#peek();
    return this.#isItem(j) ? this.#seq(indent) : this.#map(indent);
  }

  #map(indent: number): { [key: string]: Yaml } {
    const obj: { [key: string]: Yaml } = {};
    for (let j = this.#peek(); j !== -1 && this.#indent(j) === indent && !this.#isItem(j); j = this.#peek()) {
      const m = KEY.exec(this.lines[j]!.slice(indent));
      if (m === null) this.#fail(j, 'expected "key: value"');
      const key = unquoteKey(m[1]!);
      if (Object.hasOwn(obj, key)) this.#fail(j, `duplicate key ${key}`);
      this.#i = j + 1;
      obj[key] = this.#value(m[2] ?? '', indent, j, true);
    }
    const j = this.#peek();
    if (j !== -1 && this.#indent(j) > indent) this.#fail(j, 'unexpected indentation');
    return obj;
  }

  #seq(indent: number): Yaml[] {
    const arr: Yaml[] = [];
    for (let j = this.#peek(); j !== -1 && this.#indent(j) === indent && this.#isItem(j); j = this.#peek()) {
      const after = this.lines[j]!.slice(indent + 1);
      const rest = after.trimStart();
      const col = indent + 1 + (after.length - rest.length);
      if (rest !== '' && !rest.startsWith('#') && KEY.test(rest) && !/^["'[{|]/.test(rest)) {
        // `- key: value`: the item is a mapping whose first line starts at `col`.
        this.lines[j] = ' '.repeat(col) + rest;
        arr.push(this.#map(col));
      } else {
        this.#i = j + 1;
        arr.push(this.#value(rest, indent, j, false));
      }
    }
    return arr;
  }

  /** The value after `key:` or `-` on line `j` (`rest`), whose parent is at `indent`. */
  #value(rest: string, indent: number, j: number, inMap: boolean): Yaml {
    const text = stripComment(rest).trim();
    if (text === '|' || text === '|-') return this.#block(indent, text === '|-');
    if (text !== '') return scalar(text, () => this.#fail(j, 'unsupported or ambiguous scalar'));
    const k = this.#peek();
    if (k === -1) return null;
    const ind = this.#indent(k);
    if (ind > indent) return this.#node(ind);
    if (inMap && ind === indent && this.#isItem(k)) return this.#seq(indent);
    return null;
  }

  #block(indent: number, strip: boolean): string {
    const body: string[] = [];
    let contentIndent = -1;
    let j = this.#i;
    for (; j < this.lines.length; j++) {
      const l = this.lines[j]!;
      if (l.trim() === '') { body.push(''); continue; }
      const ind = l.length - l.trimStart().length;
      if (contentIndent === -1) {
        if (ind <= indent) break;
        contentIndent = ind;
      }
      if (ind < contentIndent) break;
      body.push(l.slice(contentIndent));
    }
    this.#i = j;
    while (body.length > 0 && body[body.length - 1] === '') body.pop();
    const text = body.join('\n');
    return strip || text === '' ? text : text + '\n';
  }
}

const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s#'"\-?:,[\]{}&*!|>%@`][^#]*?)\s*:(?:\s+(.*)|$)/;

function unquoteKey(k: string): string {
  if (k.startsWith('"')) return JSON.parse(k) as string;
  if (k.startsWith("'")) return k.slice(1, -1).replace(/''/g, "'");
  return k;
}

/** Cut a ` #` comment that is outside quotes. */
function stripComment(s: string): string {
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q === '"' && c === '\\') { i++; continue; }
    if (q !== null) { if (c === q) q = null; continue; }
    if (c === '"' || c === "'") q = c;
    else if (c === '#' && (i === 0 || /\s/.test(s[i - 1]!))) return s.slice(0, i);
  }
  return s;
}

function scalar(text: string, fail: () => never): Yaml {
  if (text.startsWith('"')) {
    if (!/^"(?:[^"\\]|\\.)*"$/.test(text)) fail();
    return JSON.parse(text) as string;
  }
  if (text.startsWith("'")) {
    if (!/^'(?:[^']|'')*'$/.test(text)) fail();
    return text.slice(1, -1).replace(/''/g, "'");
  }
  if (text === '[]') return [];
  if (text === '{}') return {};
  if (text.startsWith('[')) {
    if (!text.endsWith(']')) fail();
    const items: string[] = [];
    let cur = '';
    let q: string | null = null;
    for (const c of text.slice(1, -1)) {
      if (q !== null) { cur += c; if (c === q) q = null; continue; }
      if (c === '"' || c === "'") { q = c; cur += c; continue; }
      if (c === '[' || c === '{' || c === ']' || c === '}') fail();
      if (c === ',') { items.push(cur.trim()); cur = ''; continue; }
      cur += c;
    }
    if (cur.trim() !== '') items.push(cur.trim());
    return items.map((t) => scalar(t, fail));
  }
  if (/^[&*!%@`{>|]/.test(text) || /:\s/.test(text) || /^- /.test(text)) fail();
  if (/^(y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/.test(text)) fail();
  if (text === 'null' || text === '~') return null;
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (/^[-+]?(0|[1-9][0-9]*)$/.test(text)) return Number(text);
  if (/^0[0-7]+$/.test(text)) return parseInt(text, 8);
  if (/^[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(text)) return Number(text);
  if (/^(0[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+|\.inf|\.nan)$/i.test(text)) fail();
  return text;
}

// ---------------------------------------------------------------------------------------------

type Obj = { apiVersion?: string; kind?: string; metadata?: { name?: string; labels?: Record<string, string> }; [k: string]: unknown };

/** The Kubernetes kinds deploy/kubernetes uses, with their kubernetes-models class and TS type. */
const KINDS: Record<string, { model: { new (data: never): { validate(): void } }; type: [string, string] }> = {
  'apps/v1 Deployment': { model: Deployment as never, type: ['kubernetes-models/apps/v1/Deployment', 'IDeployment'] },
  'v1 Service': { model: Service as never, type: ['kubernetes-models/v1/Service', 'IService'] },
  'v1 ServiceAccount': { model: ServiceAccount as never, type: ['kubernetes-models/v1/ServiceAccount', 'IServiceAccount'] },
  'v1 ConfigMap': { model: ConfigMap as never, type: ['kubernetes-models/v1/ConfigMap', 'IConfigMap'] },
  'policy/v1 PodDisruptionBudget': { model: PodDisruptionBudget as never, type: ['kubernetes-models/policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'] },
  'autoscaling/v2 HorizontalPodAutoscaler': { model: HorizontalPodAutoscaler as never, type: ['kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler', 'IHorizontalPodAutoscaler'] },
  'networking.k8s.io/v1 NetworkPolicy': { model: NetworkPolicy as never, type: ['kubernetes-models/networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'] },
};

const yamlFiles = readdirSync(K8S_DIR).filter((f) => f.endsWith('.yaml')).sort();
const parsed = new Map<string, Obj[]>(yamlFiles.map((f) => [f, parseYamlDocuments(readFileSync(path.join(K8S_DIR, f), 'utf8'), f) as Obj[]]));
const objectsOf = (file: string): Obj[] => parsed.get(file) ?? assert.fail(`deploy/kubernetes/${file} is missing`);
const one = (file: string, kind: string): Obj => {
  const found = objectsOf(file).filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `one ${kind} in ${file}`);
  return found[0]!;
};
const kubeObjects = (): Array<[string, Obj]> => [...parsed].flatMap(([f, objs]) => objs.filter((o) => o.kind !== 'Kustomization').map((o) => [f, o] as [string, Obj]));

/** Validate `o` with kubernetes-models; the error message names the failing paths. */
function validate(o: Obj): void {
  const k = KINDS[`${o.apiVersion} ${o.kind}`];
  assert.ok(k, `${o.apiVersion} ${o.kind} is one of the kinds this test knows`);
  new k.model(o as never).validate();
}

/** Type-check objects against kubernetes-models' TypeScript types with tsc; returns its output, or null when clean. */
async function typecheck(objs: Obj[]): Promise<string | null> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'fezz-k8s-types-'));
  try {
    await symlink(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    const imports = new Set<string>();
    const decls = objs.map((o, n) => {
      const k = KINDS[`${o.apiVersion} ${o.kind}`]!;
      imports.add(`import type { ${k.type[1]} } from '${k.type[0]}';`);
      // A fresh object literal per object: TypeScript's excess property check flags any
      // field the type does not have, at every depth.
      return `export const o${n}: ${k.type[1]} = ${JSON.stringify(o, null, 2)};`;
    });
    await writeFile(path.join(dir, 'check.ts'), [...imports, ...decls].join('\n') + '\n');
    await writeFile(path.join(dir, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, module: 'preserve', moduleResolution: 'bundler', target: 'ES2022', skipLibCheck: true, types: [] },
      files: ['check.ts'],
    }));
    const tsc = path.join(ROOT, 'node_modules', '.bin', 'tsc');
    return await new Promise<string | null>((resolve) => {
      execFile(tsc, ['-p', dir], { cwd: dir, timeout: 60_000 }, (err, stdout, stderr) => resolve(err ? `${stdout}${stderr}` || String(err) : null));
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
const podSpec = (d: Obj): NonNullable<IDeployment['spec']>['template']['spec'] & object => (d as unknown as IDeployment).spec!.template.spec!;
const fezzContainer = (d: Obj): IContainer => {
  const c = podSpec(d).containers.find((x) => x.name === 'fezz');
  return c ?? assert.fail('a container named fezz');
};

/** `fezz serve` options as the real CLI parses the container's args (defaults filled in). */
function serveOptions(args: string[]): Record<string, unknown> {
  assert.equal(args[0], 'serve', 'the container runs `fezz serve`');
  const cmd = serveCommand();
  cmd.exitOverride();
  cmd.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  cmd.action(() => undefined);
  const saved = { ...process.env };
  // Only the args count, not this test's environment.
  for (const k of Object.keys(process.env)) if (k.startsWith('FEZZ_')) delete process.env[k];
  try {
    cmd.parse(args.slice(1), { from: 'user' });
  } finally {
    Object.assign(process.env, saved);
  }
  return cmd.opts();
}

/** Whether `selector` (matchLabels) selects pods labelled `labels`. */
const selects = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/kubernetes: schemas', () => {
  it('every file parses, and holds only kinds this test knows', () => {
    assert.ok(yamlFiles.length >= 8, `found ${yamlFiles.join(', ')}`);
    for (const [file, o] of kubeObjects()) {
      assert.ok(KINDS[`${o.apiVersion} ${o.kind}`], `${file}: ${o.apiVersion} ${o.kind}`);
      assert.ok(o.metadata?.name, `${file}: ${o.kind} has a name`);
    }
  });

  it('every object validates against the kubernetes-models schemas', () => {
    for (const [file, o] of kubeObjects()) {
      assert.doesNotThrow(() => validate(o), `${file}: ${o.kind} ${o.metadata?.name}`);
    }
  });

  it('the schema check fails on a broken object (a string port, a missing container list)', () => {
    const d = clone(one('deployment.yaml', 'Deployment'));
    (fezzContainer(d).ports![0] as { containerPort: unknown }).containerPort = '3000';
    assert.throws(() => validate(d), /containerPort must be integer/);
    const e = clone(one('deployment.yaml', 'Deployment'));
    delete (podSpec(e) as { containers?: unknown }).containers;
    assert.throws(() => validate(e), /must have required property 'containers'|required property containers/);
  });

  it('every object type-checks against the kubernetes-models types (no unknown or misspelt field)', async () => {
    const out = await typecheck(kubeObjects().map(([, o]) => o));
    assert.equal(out, null, out ?? '');
  });

  it('the type check fails on a misspelt field deep in a pod spec', async () => {
    const d = clone(one('deployment.yaml', 'Deployment'));
    (fezzContainer(d) as unknown as Record<string, unknown>).readinesProbe = fezzContainer(d).readinessProbe;
    const out = await typecheck([d]);
    assert.match(out ?? '', /readinesProbe/);
  });
});

describe('deploy/kubernetes: what the manifests must say', () => {
  const d = one('deployment.yaml', 'Deployment');
  const spec = (d as unknown as IDeployment).spec!;
  const pod = podSpec(d);
  const c = fezzContainer(d);
  // Parsed on first use, so a flag the CLI does not know fails the tests that need it.
  let parsedOpts: Record<string, unknown> | null = null;
  const opts = (): Record<string, unknown> => (parsedOpts ??= serveOptions(c.args ?? []));
  const podLabels = spec.template.metadata!.labels!;

  it('fezz serve accepts the container\'s arguments (parsed by the real CLI)', () => {
    assert.equal(opts().host, '0.0.0.0', 'the public listener is reachable from the Service');
    assert.equal(opts().adminHost, '0.0.0.0', 'the admin listener is reachable from the headless Service');
    assert.equal(opts().isolation, 'sandbox');
    const byName = new Map((c.ports ?? []).map((p) => [p.name, p.containerPort]));
    assert.equal(byName.get('http'), opts().port, 'port "http" is --port');
    assert.equal(byName.get('admin'), opts().adminPort, 'port "admin" is --admin-port');
    const mounts = (c.volumeMounts ?? []).map((m) => m.mountPath);
    for (const p of [opts().dir, opts().tokenFile, opts().cacheDir] as string[]) {
      assert.ok(mounts.some((m) => p === m || p.startsWith(m + '/')), `${p} is on a mounted volume (the root file system is read-only)`);
    }
    assert.ok(String(opts().source ?? '').startsWith('s3://'), 'functions come from --source');
  });

  it('rolls out without losing capacity, and scales through the HPA', () => {
    assert.equal(spec.strategy?.type, 'RollingUpdate');
    assert.equal(spec.strategy?.rollingUpdate?.maxUnavailable, 0);
    assert.ok(Number(spec.strategy?.rollingUpdate?.maxSurge) >= 1);
    assert.equal(spec.replicas, undefined, 'replicas is left to the HPA');
    assert.ok(selects(spec.selector.matchLabels!, podLabels));
    assert.ok(c.resources?.requests?.cpu, 'a CPU request (the HPA scales on utilization of it)');
  });

  it('probes /healthz: startup, readiness, liveness', () => {
    for (const name of ['startupProbe', 'readinessProbe', 'livenessProbe'] as const) {
      const probe = c[name];
      assert.equal(probe?.httpGet?.path, '/healthz', name);
      assert.equal(probe?.httpGet?.port, 'http', name);
    }
    const startupWindow = (c.startupProbe!.periodSeconds ?? 10) * (c.startupProbe!.failureThreshold ?? 3);
    assert.ok(startupWindow >= 60, `the startup probe allows ${startupWindow} s for the initial sync and warm-up`);
  });

  it('the preStop hook and the grace period cover fezz\'s drain', () => {
    const preStop = c.lifecycle?.preStop;
    const sleepS = preStop?.sleep?.seconds ?? Number(preStop?.exec?.command?.at(-1));
    assert.ok(Number.isInteger(sleepS) && sleepS > 0, 'a preStop sleep');
    if (preStop?.exec) assert.deepEqual(preStop.exec.command?.slice(0, -1), ['/bin/sleep']);
    const drainS = (opts().drainDelay as number) / 1000;
    const graceS = (opts().grace as number) / 1000;
    assert.ok(drainS > 0, 'fezz drains (503 on /healthz, connection: close) after SIGTERM');
    const needed = sleepS + drainS + graceS + 2; // + fezz serve's backstop
    assert.ok((pod.terminationGracePeriodSeconds ?? 30) >= needed, `terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} >= ${needed}`);
    const liveness = (c.livenessProbe!.periodSeconds ?? 10) * (c.livenessProbe!.failureThreshold ?? 3);
    assert.ok(liveness > drainS + graceS, `the liveness probe (${liveness} s) does not restart a draining pod (${drainS + graceS} s)`);
  });

  it('runs as the image\'s non-root user with a read-only root and no capabilities', () => {
    const user = dockerfile().finalUser;
    assert.equal(pod.securityContext?.runAsNonRoot, true);
    assert.equal(String(pod.securityContext?.runAsUser), user.split(':')[0], 'runAsUser is the Dockerfile\'s USER');
    for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
      const sc = container.securityContext;
      assert.equal(sc?.allowPrivilegeEscalation, false, container.name);
      assert.equal(sc?.readOnlyRootFilesystem, true, container.name);
      assert.deepEqual(sc?.capabilities?.drop, ['ALL'], container.name);
      assert.equal(sc?.privileged ?? false, false, container.name);
    }
    assert.equal(pod.automountServiceAccountToken, false);
    // The sandbox tier's needs (docs/kubernetes.md): its own user namespace and an unmasked /proc.
    assert.equal(pod.hostUsers, false);
    assert.equal(c.securityContext?.procMount, 'Unmasked');
  });

  it('every volume a container mounts exists; the admin token comes from a Secret, copied 0600', () => {
    const volumes = new Set((pod.volumes ?? []).map((v) => v.name));
    for (const container of [...pod.containers, ...(pod.initContainers ?? [])]) {
      for (const m of container.volumeMounts ?? []) assert.ok(volumes.has(m.name), `${container.name} mounts ${m.name}`);
    }
    const init = (pod.initContainers ?? []).find((x) => x.name === 'admin-token');
    assert.ok(init, 'an init container copies the token');
    assert.deepEqual(init.command?.slice(0, 3), ['/usr/bin/install', '-m', '0600']);
    assert.equal(init.command?.at(-1), opts().tokenFile);
    const secret = (pod.volumes ?? []).find((v) => v.secret);
    assert.equal(secret?.secret?.secretName, 'fezz-admin-token');
  });

  it('the Service and the headless admin Service select the pods; the NetworkPolicy keeps the admin port private', () => {
    const svc = one('service.yaml', 'Service') as unknown as { spec: { selector: Record<string, string>; ports: Array<{ targetPort: unknown }> } };
    assert.ok(selects(svc.spec.selector, podLabels));
    assert.deepEqual(svc.spec.ports.map((p) => p.targetPort), ['http']);
    const admin = one('admin-service.yaml', 'Service') as unknown as { spec: { clusterIP: string; selector: Record<string, string>; ports: Array<{ port: number; targetPort: unknown }> } };
    assert.equal(admin.spec.clusterIP, 'None', 'headless: one address per pod');
    assert.ok(selects(admin.spec.selector, podLabels));
    assert.deepEqual(admin.spec.ports.map((p) => p.targetPort), ['admin']);

    const np = one('networkpolicy.yaml', 'NetworkPolicy') as unknown as { spec: { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress: Array<{ from?: Array<{ podSelector?: { matchLabels?: Record<string, string> }; ipBlock?: unknown; namespaceSelector?: unknown }>; ports?: Array<{ port: unknown }> }> } };
    assert.ok(selects(np.spec.podSelector.matchLabels, podLabels));
    assert.ok(np.spec.policyTypes.includes('Ingress'));
    const adminNames = new Set<unknown>(['admin', opts().adminPort]);
    for (const rule of np.spec.ingress) {
      const ports = rule.ports ?? [];
      assert.ok(ports.length > 0, 'every rule names its ports (a rule without ports opens every port)');
      const opensAdmin = ports.some((p) => adminNames.has(p.port));
      if (opensAdmin) {
        assert.ok(rule.from && rule.from.length > 0, 'the admin port is open only to named peers');
        for (const peer of rule.from) {
          assert.equal(peer.ipBlock, undefined, 'no address range reaches the admin port');
          assert.equal(peer.namespaceSelector, undefined, 'only pods of this namespace');
          assert.ok(Object.keys(peer.podSelector?.matchLabels ?? {}).length > 0, 'a labelled pod selector');
        }
      }
    }
    assert.ok(np.spec.ingress.some((r) => r.from === undefined && (r.ports ?? []).some((p) => p.port === 'http')), 'the public port is open');
  });

  it('the PodDisruptionBudget and the HPA fit the Deployment', () => {
    const pdb = one('pdb.yaml', 'PodDisruptionBudget') as unknown as { spec: { maxUnavailable?: number; minAvailable?: number; selector: { matchLabels: Record<string, string> } } };
    assert.ok(selects(pdb.spec.selector.matchLabels, podLabels));
    assert.equal(pdb.spec.maxUnavailable, 1);
    const hpa = one('hpa.yaml', 'HorizontalPodAutoscaler') as unknown as { spec: { scaleTargetRef: { kind: string; name: string; apiVersion: string }; minReplicas: number; maxReplicas: number; metrics: Array<{ type: string; resource?: { name: string; target: { type: string } } }> } };
    assert.deepEqual(hpa.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'Deployment', name: d.metadata!.name });
    assert.ok(hpa.spec.minReplicas >= 2, 'two pods at least, so the PDB lets one go');
    assert.ok(hpa.spec.maxReplicas > hpa.spec.minReplicas);
    assert.ok(hpa.spec.metrics.some((m) => m.type === 'Resource' && m.resource?.name === 'cpu' && m.resource.target.type === 'Utilization'));
  });

  it('kustomization.yaml lists every file but the ConfigMap variant, and names the image', () => {
    const k = one('kustomization.yaml', 'Kustomization') as unknown as { resources: string[]; images: Array<{ name: string }> };
    assert.deepEqual([...k.resources].sort(), yamlFiles.filter((f) => f !== 'kustomization.yaml' && f !== 'deployment-configmap.yaml'));
    const images = new Set(kubeObjects().flatMap(([, o]) => o.kind === 'Deployment' ? [...podSpec(o).containers, ...(podSpec(o).initContainers ?? [])].map((x) => x.image!.split(':')[0]) : []));
    assert.deepEqual([...images], [k.images[0]!.name]);
  });
});

describe('deploy/kubernetes/deployment-configmap.yaml: functions from a ConfigMap', () => {
  const objs = objectsOf('deployment-configmap.yaml');
  const cm = objs.find((o) => o.kind === 'ConfigMap') as unknown as { metadata: { name: string }; data: Record<string, string> };
  const d = objs.find((o) => o.kind === 'Deployment')!;
  const main = one('deployment.yaml', 'Deployment');
  let tmp: string;
  before(async () => { tmp = await mkdtemp(path.join(os.tmpdir(), 'fezz-k8s-cm-')); });
  after(async () => { await rm(tmp, { recursive: true, force: true }); });

  it('differs from deployment.yaml only in how functions arrive', () => {
    const strip = (o: Obj): Obj => {
      const x = clone(o);
      const c = fezzContainer(x);
      c.args = (c.args ?? []).filter((a) => !a.startsWith('--source'));
      delete c.env;
      delete c.envFrom;
      c.volumeMounts = (c.volumeMounts ?? []).map((m) => ({ ...m, readOnly: m.name === 'functions' ? true : m.readOnly }));
      podSpec(x).volumes = (podSpec(x).volumes ?? []).filter((v) => v.name !== 'functions');
      return x;
    };
    assert.deepEqual(strip(d), strip(main));
    assert.ok(!(fezzContainer(d).args ?? []).some((a) => a.startsWith('--source')));
  });

  it('maps every key to <id>@<version>/<file>, and those files load as fezz functions', async () => {
    const vol = podSpec(d).volumes!.find((v) => v.name === 'functions')!;
    const items = vol.projected!.sources!.flatMap((s) => (s.configMap?.name === cm.metadata.name ? s.configMap.items ?? [] : []));
    assert.deepEqual(items.map((i) => i.key).sort(), Object.keys(cm.data).sort(), 'every key is projected');
    const fnDirs = new Set<string>();
    for (const i of items) {
      assert.match(i.path, /^[a-z0-9][a-z0-9-]*@[^/]+\/[^/]+$/, `${i.path} is <id>@<version>/<file>`);
      await mkdir(path.join(tmp, path.dirname(i.path)), { recursive: true });
      await writeFile(path.join(tmp, i.path), cm.data[i.key]!);
      fnDirs.add(path.dirname(i.path));
    }
    for (const dir of fnDirs) {
      const fn = await loadFunctionDir(path.join(tmp, dir));
      assert.equal(fn.key, dir);
    }
  });
});

// ---------------------------------------------------------------------------------------------

interface DockerInstruction { op: string; args: string; line: number }
interface DockerStage { from: string; name: string | null; instructions: DockerInstruction[] }

/** deploy/Dockerfile as stages of instructions (continuations joined, comments dropped). */
function dockerfile(): { stages: DockerStage[]; finalUser: string; text: string } {
  const text = readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  const instructions: DockerInstruction[] = [];
  let cur: DockerInstruction | null = null;
  text.split('\n').forEach((raw, n) => {
    const line = raw.trimEnd();
    if (cur === null && (line.trim() === '' || line.trimStart().startsWith('#'))) return;
    if (cur !== null && line.trimStart().startsWith('#')) return;
    const body = line.endsWith('\\') ? line.slice(0, -1) : line;
    if (cur === null) {
      const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(body);
      assert.ok(m, `Dockerfile:${n + 1}: an instruction`);
      cur = { op: m[1]!.toUpperCase(), args: m[2]!, line: n + 1 };
    } else {
      cur.args += ' ' + body.trim();
    }
    if (!line.endsWith('\\')) { instructions.push(cur); cur = null; }
  });
  const stages: DockerStage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args.trim());
      stages.push({ from: m![1]!, name: m![2] ?? null, instructions: [] });
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push(ins);
    } else {
      assert.ok(ins.op === 'ARG', `Dockerfile:${ins.line}: only ARG before the first FROM`);
    }
  }
  const final = stages[stages.length - 1]!;
  const users = final.instructions.filter((i) => i.op === 'USER');
  return { stages, finalUser: users.at(-1)?.args.trim() ?? '', text };
}

/** The JSON array of an exec-form instruction (`CMD ["a", "b"]`). */
const execForm = (args: string): string[] => {
  const m = /(\[.*\])\s*$/.exec(args);
  assert.ok(m, `exec form: ${args}`);
  return JSON.parse(m[1]!) as string[];
};

describe('deploy/Dockerfile (checked statically: no Docker engine here)', () => {
  const { stages, finalUser } = dockerfile();
  const final = stages[stages.length - 1]!;
  const all = stages.flatMap((s) => s.instructions);

  it('is multi-stage: the final stage copies built files from earlier stages', () => {
    assert.ok(stages.length >= 2, `${stages.length} stages`);
    const named = new Set(stages.slice(0, -1).map((s) => s.name));
    const from = final.instructions.filter((i) => i.op === 'COPY').map((i) => /--from=(\S+)/.exec(i.args)?.[1]).filter(Boolean);
    assert.ok(from.length >= 2 && from.every((f) => named.has(f!)), `COPY --from ${from.join(', ')}`);
    assert.ok(!final.instructions.some((i) => i.op === 'RUN' && /\bnpm (ci|install)\b/.test(i.args)), 'no install in the final stage');
  });

  it('installs production dependencies only, from the lockfile, into what the final stage copies', () => {
    const deps = stages.find((s) => final.instructions.some((i) => i.op === 'COPY' && i.args.includes(`--from=${s.name}`) && i.args.includes('node_modules')));
    assert.ok(deps, 'a stage provides node_modules');
    const install = deps.instructions.find((i) => i.op === 'RUN' && /\bnpm ci\b/.test(i.args));
    assert.ok(install, 'npm ci (the lockfile, exactly)');
    assert.match(install.args, /--omit=dev\b/);
    // Every workspace's package.json is in the stage, or npm ci stops on the lockfile.
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { workspaces?: string[] };
    for (const ws of pkg.workspaces ?? []) {
      for (const s of stages.filter((x) => x.instructions.some((i) => /\bnpm ci\b/.test(i.args)))) {
        assert.ok(s.instructions.some((i) => i.op === 'COPY' && i.args.includes(`${ws}/package.json`)), `stage ${s.name} copies ${ws}/package.json`);
      }
    }
  });

  it('runs as a non-root numeric user', () => {
    assert.match(finalUser, /^\d+(:\d+)?$/, `USER ${finalUser}`);
    assert.notEqual(Number(finalUser.split(':')[0]), 0);
    const fromLast = final.instructions.slice(final.instructions.findIndex((i) => i.op === 'USER'));
    assert.ok(!fromLast.some((i) => i.op === 'USER' && !/^\d+(:\d+)?$/.test(i.args.trim())));
  });

  it('every file it copies from the context exists and is not excluded by .dockerignore', () => {
    const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    for (const i of all.filter((x) => x.op === 'COPY' && !x.args.includes('--from='))) {
      const parts = i.args.trim().split(/\s+/);
      for (const src of parts.slice(0, -1)) {
        assert.ok(existsSync(path.join(ROOT, src)), `Dockerfile:${i.line}: ${src} exists`);
        assert.ok(!ignore.some((p) => p === src || p === src.split('/')[0]), `Dockerfile:${i.line}: ${src} is not in .dockerignore`);
      }
    }
    for (const must of ['.git', 'node_modules', 'dist', '.env', '*.pem', '.npmrc', '.fezz']) assert.ok(ignore.includes(must), `.dockerignore excludes ${must}`);
  });

  it('bakes in no secret: no credential ARG/ENV, no token, key or .env file copied', () => {
    for (const i of all.filter((x) => x.op === 'ENV' || x.op === 'ARG')) {
      const names = [...i.args.matchAll(/(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)=/g)].map((m) => m[1]!).concat(i.op === 'ARG' ? [i.args.trim().split('=')[0]!] : []);
      for (const n of names) {
        assert.ok(!/(SECRET|PASSWORD|PASSWD|ACCESS_KEY|PRIVATE_KEY|API_KEY|CREDENTIAL)/i.test(n) && n !== 'FEZZ_TOKEN' && n !== 'NPM_TOKEN', `Dockerfile:${i.line}: ${n}`);
      }
    }
    for (const i of all.filter((x) => x.op === 'COPY' || x.op === 'ADD')) {
      assert.ok(!/(\.env\b|\.pem\b|\.key\b|\.npmrc|admin-token|id_rsa)/.test(i.args), `Dockerfile:${i.line}: ${i.args}`);
    }
    assert.ok(!all.some((x) => x.op === 'ADD' && /https?:/.test(x.args)), 'nothing fetched by ADD');
  });

  it('HEALTHCHECK probes /healthz: exit 0 on 200, 1 on 503 or no listener (the command run here)', async () => {
    const hc = final.instructions.filter((i) => i.op === 'HEALTHCHECK');
    assert.equal(hc.length, 1);
    const argv = execForm(hc[0]!.args);
    assert.equal(argv[0], 'node');
    const run = (port: number): Promise<number | null> => new Promise((resolve) => {
      const child = spawn(process.execPath, argv.slice(1), { env: { ...process.env, FEZZ_PORT: String(port) }, stdio: 'ignore' });
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.on('exit', (code) => { clearTimeout(timer); resolve(code); });
    });
    let status = 200;
    const paths: string[] = [];
    const server = http.createServer((req, res) => { paths.push(req.url ?? ''); res.writeHead(status).end(); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    try {
      assert.equal(await run(port), 0, '200: healthy');
      status = 503;
      assert.equal(await run(port), 1, '503 (draining): unhealthy');
      assert.deepEqual(paths, ['/healthz', '/healthz']);
    } finally {
      await new Promise((r) => server.close(r));
    }
    assert.equal(await run(port), 1, 'no listener: unhealthy');
  });

  it('ENTRYPOINT runs bin/fezz.js under an init, CMD is `serve`, and the ports match the manifests', () => {
    const entry = execForm(final.instructions.find((i) => i.op === 'ENTRYPOINT')!.args);
    assert.equal(entry[0], '/usr/bin/tini');
    assert.ok(entry.includes('/app/bin/fezz.js'));
    assert.deepEqual(execForm(final.instructions.find((i) => i.op === 'CMD')!.args), ['serve']);
    const exposed = final.instructions.filter((i) => i.op === 'EXPOSE').flatMap((i) => i.args.trim().split(/\s+/).map(Number));
    const ports = (fezzContainer(one('deployment.yaml', 'Deployment')).ports ?? []).map((p) => p.containerPort);
    assert.deepEqual(exposed.sort(), ports.sort());
  });
});

// ---------------------------------------------------------------------------------------------

const kubectl = ((): string | null => {
  for (const p of (process.env.PATH ?? '').split(path.delimiter)) {
    const f = path.join(p, 'kubectl');
    if (p && existsSync(f)) return f;
  }
  return null;
})();
const noKubectl = kubectl === null ? 'kubectl is not installed (apt: kubernetes-client)' : false;
/** kubectl with no cluster: an empty kubeconfig, so nothing can reach a server by accident. */
const runKubectl = (args: string[]): string => execFileSync(kubectl!, args, { encoding: 'utf8', env: { ...process.env, KUBECONFIG: '/dev/null' }, timeout: 60_000, maxBuffer: 16 << 20 });

/** kubectl prints several objects as concatenated JSON documents. */
const splitJson = (out: string): unknown[] => out.trim() === '' ? [] : out.trim().split(/\n}\n\{/).map((part, n, all) => JSON.parse((n > 0 ? '{' : '') + part + (n < all.length - 1 ? '\n}' : '')));

describe('kubectl (offline, where installed)', () => {
  it('round-trips every file through `kubectl annotate --local` to the objects parsed here', { skip: noKubectl }, () => {
    for (const file of yamlFiles.filter((f) => f !== 'kustomization.yaml')) {
      const out = splitJson(runKubectl(['annotate', '--local', '-f', path.join(K8S_DIR, file), 'fezz.dev/roundtrip=1', '-o', 'json'])) as Obj[];
      for (const o of out) {
        const ann = (o.metadata as { annotations?: Record<string, string> }).annotations!;
        assert.equal(ann['fezz.dev/roundtrip'], '1');
        delete ann['fezz.dev/roundtrip'];
        if (Object.keys(ann).length === 0) delete (o.metadata as { annotations?: unknown }).annotations;
      }
      assert.deepEqual(out, objectsOf(file), file);
    }
  });

  it('`kubectl kustomize` renders the kustomization, with the image set', { skip: noKubectl }, () => {
    const out = runKubectl(['kustomize', K8S_DIR]);
    const objs = parseYamlDocuments(out, 'kustomize output') as Obj[];
    const k = one('kustomization.yaml', 'Kustomization') as unknown as { resources: string[]; images: Array<{ newName: string; newTag: string }> };
    assert.equal(objs.length, k.resources.reduce((n, f) => n + objectsOf(f).length, 0));
    for (const o of objs) assert.doesNotThrow(() => validate(o), `${o.kind} ${o.metadata?.name}`);
    const dep = objs.find((o) => o.kind === 'Deployment')!;
    assert.equal(fezzContainer(dep).image, `${k.images[0]!.newName}:${k.images[0]!.newTag}`);
  });
});
