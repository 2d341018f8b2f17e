/**
 * Loading the one INI file: read, check every section and key against the catalogue, apply
 * `PARLEY_<SECTION>_<KEY>` environment overrides, run the cross-field rules, and either return a
 * deep-frozen `Config` or throw ONE `CONFIG_INVALID` error listing every problem.
 */
import { readFileSync } from 'node:fs';
import { ParleyError } from '../errors.ts';
import {
  envVarName,
  fieldName,
  fixedSections,
  SECTION_ID_DOC,
  SECTION_ID_PATTERN,
  templateDisplayName,
  templateSections,
  type Config,
} from './catalogue.ts';
import { deepFreeze } from './freeze.ts';
import { readIni, type IniSection } from './ini.ts';
import { closest, configInvalid, unknownWithHint } from './problems.ts';
import { CROSS_FIELD_RULES } from './rules.ts';
import type { ConfigProblem, Options } from './types.ts';
import { defaultValue, parseValue } from './values.ts';

type Values = Record<string, unknown>;

/** Where a value came from: the file (with its line) or an environment variable. */
interface Source {
  readonly file: string;
  readonly line?: number;
}

const slot = (section: string, key: string): string => `${section}\u0000${key}`;

function defaults(options: Options, id?: string): Values {
  const out: Values = {};
  for (const [key, option] of Object.entries(options)) out[fieldName(key, option)] = defaultValue(option, id);
  return out;
}

class ConfigBuilder {
  readonly problems: ConfigProblem[] = [];
  private readonly fixed = new Map<string, Values>();
  private readonly templates = new Map<string, Map<string, Values>>();
  /** Options given a value (valid or not), with where it came from. */
  private readonly sources = new Map<string, Source>();
  private readonly invalid = new Set<string>();

  constructor(private readonly fileName: string) {
    for (const [name, s] of fixedSections) this.fixed.set(name, defaults(s.options));
    for (const prefix of templateSections.keys()) this.templates.set(prefix, new Map());
  }

  problem(source: Source, section: string, key: string, message: string): void {
    this.problems.push({ file: source.file, section, key, message, ...(source.line === undefined ? {} : { line: source.line }) });
  }

  /** Parses one raw value into `target`, or records why it is wrong. */
  private set(target: Values, options: Options, section: string, key: string, raw: string, source: Source): void {
    const option = options[key];
    if (option === undefined) {
      const hint = closest(key, Object.keys(options));
      this.problem(source, section, key, unknownWithHint('unknown key', hint === undefined ? undefined : `"${hint}"`));
      return;
    }
    this.sources.set(slot(section, key), source);
    const parsed = parseValue(option, raw);
    if (parsed.ok) {
      target[fieldName(key, option)] = parsed.value;
      this.invalid.delete(slot(section, key));
    } else {
      this.problem(source, section, key, parsed.message);
      this.invalid.add(slot(section, key));
    }
  }

  private setAll(target: Values, options: Options, section: IniSection): void {
    for (const e of section.entries.values()) {
      this.set(target, options, section.name, e.key, e.value, { file: this.fileName, line: e.line });
    }
  }

  /** Reports required options without a value in one section. */
  private checkRequired(options: Options, section: string, values: Values, at: Source): void {
    for (const [key, option] of Object.entries(options)) {
      if (option.type !== 'string' || !option.required || this.sources.has(slot(section, key))) continue;
      if (values[fieldName(key, option)] === '') this.problem(at, section, key, 'missing required value');
    }
  }

  applySection(section: IniSection): void {
    const at: Source = { file: this.fileName, line: section.line };
    const fixed = fixedSections.get(section.name);
    if (fixed !== undefined) {
      this.setAll(this.fixed.get(section.name) as Values, fixed.options, section);
      return;
    }
    const dot = section.name.indexOf('.');
    const prefix = dot < 0 ? section.name : section.name.slice(0, dot);
    const template = templateSections.get(prefix);
    if (template === undefined) {
      this.problem(at, section.name, '', this.unknownSection(section.name));
      return;
    }
    const id = dot < 0 ? '' : section.name.slice(dot + 1);
    if (!SECTION_ID_PATTERN.test(id)) {
      const shape = templateDisplayName(prefix, template);
      this.problem(at, section.name, '', `section must be [${shape}] with ${template.idLabel} made of ${SECTION_ID_DOC}`);
      return;
    }
    const values: Values = { [template.idField]: id, ...defaults(template.options, id) };
    this.setAll(values, template.options, section);
    this.checkRequired(template.options, section.name, values, at);
    this.templates.get(prefix)?.set(id, values);
  }

  private unknownSection(name: string): string {
    const dot = name.indexOf('.');
    const rest = dot < 0 ? undefined : name.slice(dot + 1);
    const candidates = [...fixedSections.keys()];
    if (rest !== undefined) for (const prefix of templateSections.keys()) candidates.push(`${prefix}.${rest}`);
    const hint = closest(name, candidates);
    if (hint !== undefined) return `unknown section; did you mean [${hint}]?`;
    const known = [...fixedSections.keys(), ...[...templateSections].map(([p, t]) => templateDisplayName(p, t))];
    return `unknown section (known: ${known.join(', ')})`;
  }

  /** `PARLEY_<SECTION>_<KEY>` overrides for fixed sections; unknown names under a known section prefix are problems. */
  applyEnv(env: Readonly<Record<string, string | undefined>>): void {
    const known = new Set<string>();
    for (const [name, s] of fixedSections) {
      for (const key of Object.keys(s.options)) {
        const variable = envVarName(name, key);
        known.add(variable);
        const raw = env[variable];
        if (raw === undefined) continue;
        // An override wins over the file: what was wrong with the file's value no longer matters.
        for (let i = this.problems.length - 1; i >= 0; i--) {
          const p = this.problems[i];
          if (p !== undefined && p.section === name && p.key === key && p.file === this.fileName) this.problems.splice(i, 1);
        }
        this.set(this.fixed.get(name) as Values, s.options, name, key, raw.trim(), { file: variable });
      }
    }
    const prefixes = [...fixedSections.keys()].map((name) => ({ name, prefix: `${envVarName(name, '')}` }));
    for (const variable of Object.keys(env).sort()) {
      if (known.has(variable) || env[variable] === undefined) continue;
      const match = prefixes.filter((p) => variable.startsWith(p.prefix)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
      if (match === undefined) continue;
      const hint = closest(variable, [...known].filter((k) => k.startsWith(match.prefix)));
      this.problem({ file: variable }, match.name, '', unknownWithHint('unknown environment override', hint));
    }
  }

  /** Required values and section counts, once everything is applied. */
  checkComplete(): void {
    for (const [name, s] of fixedSections) {
      this.checkRequired(s.options, name, this.fixed.get(name) as Values, { file: this.fileName });
    }
    for (const [prefix, t] of templateSections) {
      const count = this.templates.get(prefix)?.size ?? 0;
      if (count < t.minCount) {
        const what = `at least ${t.minCount} [${templateDisplayName(prefix, t)}] section${t.minCount === 1 ? ' is' : 's are'} required`;
        this.problem({ file: this.fileName }, templateDisplayName(prefix, t), '', what);
      }
    }
  }

  build(): Config {
    const out: Values = { file: this.fileName };
    for (const [name, s] of fixedSections) out[s.group] = this.fixed.get(name);
    for (const [prefix, t] of templateSections) out[t.group] = this.templates.get(prefix);
    return out as unknown as Config;
  }

  checkRules(config: Config): void {
    for (const rule of CROSS_FIELD_RULES) {
      const inputs = [[rule.section, rule.key] as const, ...rule.uses];
      if (inputs.some(([s, k]) => this.invalid.has(slot(s, k)))) continue;
      const message = rule.check(config);
      if (message === undefined) continue;
      const source = this.sources.get(slot(rule.section, rule.key)) ?? { file: this.fileName };
      this.problem(source, rule.section, rule.key, message);
    }
  }
}

/** Parses and validates INI text; `fileName` names the file in problems. Pure: no fs, no process.env. */
export function parseConfig(text: string, fileName: string, env: Readonly<Record<string, string | undefined>> = {}): Config {
  const b = new ConfigBuilder(fileName);
  const ini = readIni(text);
  for (const p of ini.problems) b.problem({ file: fileName, line: p.line }, p.section, p.key, p.message);
  for (const section of ini.sections) b.applySection(section);
  b.applyEnv(env);
  b.checkComplete();
  const config = b.build();
  b.checkRules(config);
  if (b.problems.length > 0) throw configInvalid(b.problems);
  return deepFreeze(config);
}

/** Reads and parses the config file at `path`; a missing or unreadable file is CONFIG_INVALID too. */
export function loadConfigFile(path: string, env: Readonly<Record<string, string | undefined>> = process.env): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = code === 'ENOENT' ? 'config file not found' : `cannot read config file (${code ?? String(err)})`;
    const problem: ConfigProblem = { file: path, section: '', key: '', message };
    throw new ParleyError('CONFIG_INVALID', `${path}: ${message}`, { cause: err, details: { problems: [problem] } });
  }
  return parseConfig(text, path, env);
}
