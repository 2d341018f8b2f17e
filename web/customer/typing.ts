/**
 * The customer's outgoing typing notifications: typing started once when they start writing, typing
 * stopped after `idleMs` without a keystroke, when the draft is emptied, or before a send.
 */
export class TypingNotifier {
  private typing = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    /** Posts the notification; false when it could not be sent (offline). */
    private readonly post: (typing: boolean) => boolean,
    private readonly idleMs = 3000,
  ) {}

  /** The draft changed. */
  input(draft: string): void {
    if (draft.trim() === '') {
      this.stop();
      return;
    }
    if (!this.typing) this.typing = this.post(true);
    if (this.typing) this.arm();
  }

  /** Stops typing now (idle, on send). */
  stop(): void {
    this.clear();
    if (!this.typing) return;
    this.typing = false;
    this.post(false);
  }

  /** Forgets the state without posting (the connection or the chat is gone). */
  reset(): void {
    this.clear();
    this.typing = false;
  }

  private arm(): void {
    this.clear();
    this.timer = setTimeout(() => this.stop(), this.idleMs);
  }

  private clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
