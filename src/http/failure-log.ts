/**
 * What a request that failed on the server side leaves in the log: a 5xx error, or a dependency that is not
 * available (the store, a chat server node) with its cause, each cause at most once per 10 s with how
 * many requests it failed meanwhile. A planned refusal (over a limit, shutting down) carries no cause and
 * is not an error; a client's bad request (4xx) is not either.
 */
import type { ParleyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { LogThrottle } from '../log-throttle.ts';

export function failureLogger(log: Logger, what: string, throttle = new LogThrottle()): (err: ParleyError) => void {
  return (err) => {
    if (err.spec.http < 500) return;
    const cause = err.cause instanceof Error ? err.cause : undefined;
    if (err.code === 'UNAVAILABLE' && cause === undefined) return;
    const key = `${err.code} ${cause?.message ?? err.message}`;
    throttle.log(key, (extra) =>
      log.error(
        { code: err.code, reason: err.message, err: cause ?? err, ...extra },
        `${what}: ${cause?.message ?? err.message}`,
      ),
    );
  };
}
