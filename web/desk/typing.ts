/**
 * Outgoing typing notifications of one chat: typing started once when the agent starts typing, typing
 * stopped after `idleMs` without a keystroke, when the draft is emptied, or before a send. Calls run in
 * order, so a stop never overtakes its start.
 */
export class TypingNotifier {
  private typing = false;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly post: (typing: boolean) => Promise<unknown>,
    private readonly idleMs = 3000,
  ) {}

  /** The draft changed. */
  input(draft: string): void {
    if (draft.trim() === '') {
      void this.stop();
      return;
    }
    if (!this.typing) {
      this.typing = true;
      this.enqueue(true);
    }
    this.arm();
  }

  /** Stops typing now (on send, on leaving the chat); resolves when the stop was posted. */
  stop(): Promise<void> {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.typing) return this.chain.then(() => undefined);
    this.typing = false;
    return this.enqueue(false);
  }

  /** Forgets the state without posting (the chat is no longer ours). */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.typing = false;
  }

  private arm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.stop(), this.idleMs);
  }

  private enqueue(typing: boolean): Promise<void> {
    const next = this.chain.then(() => this.post(typing)).then(
      () => undefined,
      () => undefined,
    );
    this.chain = next;
    return next;
  }
}
