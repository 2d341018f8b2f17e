/** Deep freezing, including Maps (whose `set`, `delete` and `clear` then throw). */

function refuse(): never {
  throw new TypeError('Cannot modify a frozen map');
}

/** Freezes `value` and everything reachable from it through properties, array items and map entries. */
export function deepFreeze<T>(value: T): T {
  if (typeof value !== 'object' || value === null || Object.isFrozen(value)) return value;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      deepFreeze(k);
      deepFreeze(v);
    }
    for (const method of ['set', 'delete', 'clear']) {
      Object.defineProperty(value, method, { value: refuse, enumerable: false });
    }
  }
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<PropertyKey, unknown>)[key]);
  return value;
}
