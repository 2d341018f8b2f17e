/**
 * The kinds of option a catalogue declaration can have, and the type-level rules that turn a
 * declaration into a `Config` field: the key in camelCase (`max-body-size` → `maxBodySize`), with
 * `Ms` appended for `seconds` options (`idle-timeout` → `idleTimeoutMs`, value in milliseconds).
 */

interface OptionBase {
  /** One line for docs/configuration.md. */
  readonly doc: string;
}

export interface StringOption extends OptionBase {
  readonly type: 'string';
  readonly default: string;
  /** The value must not be empty; when the key is absent and the default is empty, it is missing. */
  readonly required?: boolean;
  readonly minLength?: number;
  readonly pattern?: RegExp;
  /** What `pattern` means, for messages and docs, e.g. "digits only". */
  readonly patternDoc?: string;
  /** Never echo the value in problems (passwords, keys). */
  readonly secret?: boolean;
  /** In a `[prefix.<id>]` section: when absent, the value is the section's id. */
  readonly defaultFromId?: boolean;
}

export interface IntOption extends OptionBase {
  readonly type: 'int';
  readonly default: number;
  readonly min: number;
  readonly max: number;
}

/** Whole seconds in the file; milliseconds in `Config` (field name ends in `Ms`). */
export interface SecondsOption extends OptionBase {
  readonly type: 'seconds';
  /** In seconds. */
  readonly default: number;
  readonly min: number;
  readonly max: number;
}

export interface BoolOption extends OptionBase {
  readonly type: 'bool';
  readonly default: boolean;
}

export interface EnumOption extends OptionBase {
  readonly type: 'enum';
  readonly values: readonly string[];
  readonly default: string;
}

export interface ListOption extends OptionBase {
  readonly type: 'list';
  readonly default: readonly string[];
  /** Every character here separates items; default ",". Empty items are dropped. */
  readonly separators?: string;
  readonly lowerCase?: boolean;
  readonly stripLeadingDots?: boolean;
  /** Each (normalised) item must match, e.g. an origin or a file extension. */
  readonly itemPattern?: RegExp;
  readonly itemDoc?: string;
}

export type Option = StringOption | IntOption | SecondsOption | BoolOption | EnumOption | ListOption;
export type OptionType = Option['type'];

export type Options = Readonly<Record<string, Option>>;

/** A section that appears once, e.g. `[http]`; its values form the `Config[group]` object. */
export interface FixedSection {
  readonly group: string;
  readonly doc: string;
  readonly options: Options;
}

/** A family of sections `[prefix.<id>]`, e.g. `[agent.alice]`; they form the `Config[group]` map by id. */
export interface TemplateSection {
  readonly group: string;
  readonly doc: string;
  /** The field that carries the id in each entry, e.g. `agentId`. */
  readonly idField: string;
  /** How the id is shown in docs and messages, e.g. `<id>`. */
  readonly idLabel: string;
  /** At least this many sections of the family must exist. */
  readonly minCount: number;
  readonly options: Options;
}

/** The parsed value type of one declaration. */
export type ValueOf<O> = O extends { readonly type: 'string' }
  ? string
  : O extends { readonly type: 'int' | 'seconds' }
    ? number
    : O extends { readonly type: 'bool' }
      ? boolean
      : O extends { readonly type: 'enum'; readonly values: readonly (infer V)[] }
        ? V
        : O extends { readonly type: 'list' }
          ? readonly string[]
          : never;

/** `max-body-size` → `maxBodySize`; GMS keys too: `customhttp.url` → `customhttpUrl`, `enable_notification_mode` → `enableNotificationMode`. */
export type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}`
  ? `${CamelCase<Head>}${Capitalize<CamelCase<Tail>>}`
  : S extends `${infer Head}.${infer Tail}`
    ? `${CamelCase<Head>}${Capitalize<CamelCase<Tail>>}`
    : S extends `${infer Head}_${infer Tail}`
      ? `${Head}${Capitalize<CamelCase<Tail>>}`
      : S;

export type FieldName<K extends string, O> = O extends { readonly type: 'seconds' } ? `${CamelCase<K>}Ms` : CamelCase<K>;

/** The `Config` object of one section's options. */
export type GroupValues<O> = {
  readonly [K in keyof O & string as FieldName<K, O[K]>]: ValueOf<O[K]>;
};

/** Flattens intersections so editors show one plain object type. */
export type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** One thing wrong with the configuration. `file` is the file name, or the env var for an override. */
export interface ConfigProblem {
  readonly file: string;
  /** The section, or "" for a line before any section. */
  readonly section: string;
  /** The key, or "" for a problem with a whole section. */
  readonly key: string;
  readonly message: string;
  /** 1-based line in the file, when known. */
  readonly line?: number;
}
