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
  /** Admitted Request Chats not yet stored (they count against the limit: concurrent ones cannot pass it together). */
  private pendingOpen = 0;
  private pendingFlex = 0;

  constructor(
    private readonly limits: Limits,
    private readonly counts: () => { open: number; flex: number },
  ) {}

  /**
   * Takes the figures of the sessions held into the "limit reached" state. Called on every change of them
   * (not only when a Request Chat or a health probe asks), so that reaching a limit is noticed whoever looks.
   * Pending admissions do not count here: one that fails must not leave the node refusing.
   */
  observe(): void {
    const { open, flex } = this.counts();
    const l = this.limits;
    if (open >= l.sessions) this.fullSessions = true;
    else if (below(open, l.sessions, l.restorePercent)) this.fullSessions = false;
    if (flex >= l.flexUsers) this.fullFlex = true;
    else if (below(flex, l.flexUsers, l.restorePercent)) this.fullFlex = false;
  }

  /**
   * Throws UNAVAILABLE when a new session (push-subscribed or not) must be refused now; otherwise counts it
   * as pending and answers the function to call once it is stored or failed.
   */
  admit(withPush: boolean): () => void {
    this.observe();
    const c = this.counts();
    // Pending admissions count for the limit itself (concurrent Request Chats cannot pass it together).
    if (this.fullSessions || c.open + this.pendingOpen >= this.limits.sessions) {
      throw new ParleyError('UNAVAILABLE', 'This chat server node reached limit-for-sessions; retry (another node may take it).');
    }
    if (withPush && (this.fullFlex || c.flex + this.pendingFlex >= this.limits.flexUsers)) {
      throw new ParleyError('UNAVAILABLE', 'This chat server node reached limit-for-flex-users; retry.');
    }
    const flex = withPush ? 1 : 0;
    this.pendingOpen++;
    this.pendingFlex += flex;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pendingOpen--;
      this.pendingFlex -= flex;
      this.observe();
    };
  }

  state(): { sessionsFull: boolean; flexFull: boolean } {
    this.observe();
    return { sessionsFull: this.fullSessions, flexFull: this.fullFlex };
  }
}

/** Below the restore threshold; with a threshold of 0, once the figure is back to 0 (never "below 0"). */
function below(n: number, limit: number, restorePercent: number): boolean {
  return restorePercent <= 0 ? n === 0 : n < (limit * restorePercent) / 100;
}
