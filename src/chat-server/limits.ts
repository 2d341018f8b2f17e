/**
 * Load limits of a chat server node (the Genesys [settings] options): limit-for-sessions,
 * limit-for-flex-users and limits-restore-threshold. Once a limit is reached, new sessions are refused
 * with a retryable statusCode 1 (the gateway tries another node) until the figure drops below the
 * threshold percentage of the limit.
 */
import { ParleyError } from '../errors.ts';

export interface Limits {
  readonly sessions: number;
  readonly flexUsers: number;
  readonly restorePercent: number;
}

export class Admission {
  private fullSessions = false;
  private fullFlex = false;

  constructor(
    private readonly limits: Limits,
    private readonly counts: () => { open: number; flex: number },
  ) {}

  private update(): void {
    const c = this.counts();
    const l = this.limits;
    const below = (n: number, limit: number) => n < (limit * l.restorePercent) / 100;
    if (c.open >= l.sessions) this.fullSessions = true;
    else if (below(c.open, l.sessions)) this.fullSessions = false;
    if (c.flex >= l.flexUsers) this.fullFlex = true;
    else if (below(c.flex, l.flexUsers)) this.fullFlex = false;
  }

  /** Throws UNAVAILABLE when a new session (push-subscribed or not) must be refused now. */
  admit(withPush: boolean): void {
    this.update();
    if (this.fullSessions) throw new ParleyError('UNAVAILABLE', 'This chat server node reached limit-for-sessions; retry (another node may take it).');
    if (withPush && this.fullFlex) throw new ParleyError('UNAVAILABLE', 'This chat server node reached limit-for-flex-users; retry.');
  }

  state(): { sessionsFull: boolean; flexFull: boolean } {
    this.update();
    return { sessionsFull: this.fullSessions, flexFull: this.fullFlex };
  }
}
