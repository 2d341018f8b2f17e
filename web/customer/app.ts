/**
 * Parley customer chat (`/chat/`): starts a chat through the receiver's WebSocket, shows the conversation
 * live (agent messages, typing, joins and leaves, files), sends messages, typing notifications and files,
 * and survives reloads, dropped connections and a laptop closed for a day: the browser token and the
 * transcript are kept in localStorage, and every (re)connection resumes from the last event seen.
 */
import { byId, h, linkified } from './dom.ts';
import { acceptList, downloadFile, fetchLimits, refusal, uploadFile, type FileLimits } from './files.ts';
import { Conversation, isMine, typingLine } from './model.ts';
import { announcement, group, renderEvent, type RenderContext } from './render.ts';
import { ChatSocket, type SocketStatus } from './socket.ts';
import { clearChat, loadChat, saveChat } from './store.ts';
import type { ChatEvent, ServerFrame, WireError } from './types.ts';
import { TypingNotifier } from './typing.ts';

const el = {
  conn: byId('conn'),
  connText: byId('conn-text'),
  main: byId('main'),
  start: byId('start'),
  startForm: byId<HTMLFormElement>('start-form'),
  name: byId<HTMLInputElement>('name'),
  subject: byId<HTMLInputElement>('subject'),
  email: byId<HTMLInputElement>('email'),
  startError: byId('start-error'),
  startSubmit: byId<HTMLButtonElement>('start-submit'),
  chat: byId('chat'),
  avatar: byId('avatar'),
  title: byId('chat-title'),
  sub: byId('chat-sub'),
  leave: byId<HTMLButtonElement>('leave'),
  scroller: byId('scroller'),
  transcript: byId<HTMLOListElement>('transcript'),
  outbox: byId<HTMLOListElement>('outbox'),
  jump: byId<HTMLButtonElement>('jump'),
  typing: byId('typing'),
  typingText: byId('typing-text'),
  ended: byId('ended'),
  endedText: byId('ended-text'),
  newChat: byId<HTMLButtonElement>('new-chat'),
  composer: byId<HTMLFormElement>('composer'),
  notice: byId('notice'),
  uploadStatus: byId('upload-status'),
  attach: byId<HTMLButtonElement>('attach'),
  file: byId<HTMLInputElement>('file'),
  message: byId<HTMLTextAreaElement>('message'),
  announcer: byId('announcer'),
  leaveDialog: byId<HTMLDialogElement>('leave-dialog'),
  leaveCancel: byId<HTMLButtonElement>('leave-cancel'),
  leaveConfirm: byId<HTMLButtonElement>('leave-confirm'),
};

/** idle: no session on the socket · starting / resuming: waiting for `started` · live: chatting. */
type Phase = 'idle' | 'starting' | 'resuming' | 'live';

/** A message of the customer not yet confirmed by its own Message event. */
interface Pending {
  readonly text: string;
  readonly li: HTMLLIElement;
  readonly status: HTMLElement;
  state: 'queued' | 'sending' | 'failed';
  timer?: ReturnType<typeof setTimeout>;
}

const SEND_TIMEOUT_MS = 15_000;

const state = {
  token: '',
  chatId: '',
  nickname: '',
  subject: '',
  ended: false,
  phase: 'idle' as Phase,
  convo: new Conversation(),
  pending: [] as Pending[],
  startRequest: undefined as { nickname: string; subject: string; emailAddress: string } | undefined,
  limits: undefined as FileLimits | undefined,
  leaving: false,
  uploading: false,
};

const socket = new ChatSocket({
  open() {
    if (state.token !== '') {
      state.phase = 'resuming';
      socket.send({ type: 'resume', token: state.token, from: state.convo.lastIndex + 1 });
    } else if (state.startRequest !== undefined) {
      state.phase = 'starting';
      const r = state.startRequest;
      socket.send({
        type: 'start',
        nickname: r.nickname,
        ...(r.subject === '' ? {} : { subject: r.subject }),
        ...(r.emailAddress === '' ? {} : { emailAddress: r.emailAddress }),
      });
    } else socket.stop();
  },
  frame: onFrame,
  status: onStatus,
});

const typing = new TypingNotifier((on) => state.phase === 'live' && socket.send({ type: 'typing', typing: on }));

const renderCtx: RenderContext = {
  download(fileId, name, button) {
    void download(fileId, name, button);
  },
};

// ---------------------------------------------------------------------------------------------------
// Views and status

function showView(view: 'start' | 'chat'): void {
  el.start.hidden = view !== 'start';
  el.chat.hidden = view !== 'chat';
  document.body.classList.toggle('in-chat', view === 'chat');
}

function onStatus(s: SocketStatus): void {
  if (s !== 'live' && state.phase === 'live') {
    state.phase = 'idle';
    typing.reset();
  }
  if (s === 'offline' && state.token === '' && state.startRequest !== undefined) {
    socket.stop();
    startFailed('The chat service cannot be reached right now. Check your connection and try again.');
  }
  showConn(s);
}

function showConn(s: SocketStatus | 'hidden'): void {
  el.conn.hidden = s === 'hidden' || state.ended || state.token === '';
  el.conn.className = `conn conn-${s}`;
  el.connText.textContent = s === 'live' ? 'Connected' : s === 'connecting' ? 'Connecting…' : 'Offline, reconnecting…';
  el.composer.classList.toggle('offline', s !== 'live');
}

function renderHeader(): void {
  const { present, everJoined } = state.convo.agents();
  const names = [...present.values()];
  el.avatar.textContent = '';
  el.avatar.className = 'avatar';
  el.avatar.hidden = state.ended;
  if (state.ended) {
    el.title.textContent = 'Chat ended';
  } else if (names.length > 0) {
    el.title.textContent = `Chatting with ${names.join(' and ')}`;
    // The first whole character (an emoji is two UTF-16 units; a flag or a family even more).
    el.avatar.textContent = firstCharacter((names[0] ?? '?').trim()).toUpperCase();
  } else {
    el.title.textContent = everJoined ? 'Waiting for another agent…' : 'Waiting for an agent…';
    el.avatar.classList.add('waiting');
  }
  el.sub.textContent = state.subject !== '' ? state.subject : state.ended ? '' : 'We will answer here. You can close this page and come back later.';
}

function renderTyping(): void {
  const names = state.ended ? [] : [...state.convo.typing().values()];
  const line = typingLine(names);
  el.typingText.textContent = line;
  el.typing.classList.toggle('on', line !== '');
}

/** The first grapheme of a text (Intl.Segmenter), or its first code point where that is missing. */
function firstCharacter(s: string): string {
  const Segmenter = (Intl as { Segmenter?: new (l?: string, o?: { granularity: 'grapheme' }) => { segment(t: string): Iterable<{ segment: string }> } }).Segmenter;
  if (Segmenter !== undefined) {
    for (const g of new Segmenter(undefined, { granularity: 'grapheme' }).segment(s)) return g.segment;
    return '';
  }
  return [...s][0] ?? '';
}

function announce(text: string): void {
  el.announcer.append(h('p', {}, text));
  while (el.announcer.childElementCount > 5) el.announcer.firstElementChild?.remove();
}

function showNotice(text: string): void {
  el.notice.textContent = text;
  el.notice.classList.toggle('on', text !== '');
}

function persist(): void {
  if (state.token === '') return;
  saveChat({
    token: state.token,
    chatId: state.chatId,
    nickname: state.nickname,
    subject: state.subject,
    lastIndex: state.convo.lastIndex,
    ended: state.ended,
    events: state.convo.events,
    outbox: state.pending.filter((p) => p.state === 'queued').map((p) => p.text),
    unsent: state.pending.filter((p) => p.state !== 'queued').map((p) => p.text),
  });
}

// ---------------------------------------------------------------------------------------------------
// The transcript

function nearBottom(): boolean {
  const s = el.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

/** Whether the view follows the end of the conversation (the customer has not scrolled up). */
let pinned = true;

function scrollToEnd(): void {
  el.scroller.scrollTop = el.scroller.scrollHeight;
  el.jump.hidden = true;
  pinned = true;
}

/** Places an event's item by index (a late event goes before the later ones). */
function place(li: HTMLLIElement, index: number): void {
  let after = el.transcript.lastElementChild;
  while (after !== null && Number((after as HTMLElement).dataset['index']) > index) after = after.previousElementSibling;
  if (after === null) el.transcript.prepend(li);
  else after.after(li);
  group(li);
  group(li.nextElementSibling);
}

function addEvents(events: readonly ChatEvent[], live: boolean): void {
  const stick = pinned;
  const fresh = state.convo.add(events);
  if (fresh.length === 0) return;
  let mine = false;
  for (const e of fresh) {
    const li = renderEvent(e, renderCtx);
    if (li !== undefined) place(li, e.index);
    if (isMine(e) && e.type === 'Message') {
      confirmOwn(e);
      mine = true;
    }
    if (e.type === 'FileDeleted') markDeleted(e.userData?.['file-id']);
    if (live) {
      const say = announcement(e);
      if (say !== undefined && say !== '') announce(say);
    }
  }
  renderHeader();
  renderTyping();
  persist();
  if (stick || mine || !live) scrollToEnd();
  else el.jump.hidden = false;
}

function markDeleted(fileId: string | undefined): void {
  if (fileId === undefined) return;
  for (const li of el.transcript.querySelectorAll<HTMLLIElement>('li.file')) {
    if (li.dataset['fileId'] !== fileId) continue;
    li.classList.add('deleted');
    const b = li.querySelector('button');
    if (b !== null) {
      b.disabled = true;
      b.textContent = 'Removed';
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Sending

const norm = (t: string) => t.replace(/\r\n?/g, '\n').trim();

function queueMessage(text: string): Pending {
  const status = h('span', { class: 'status' });
  const li = h(
    'li',
    { class: 'msg mine pending' },
    h('p', { class: 'meta' }, h('span', { class: 'who' }, 'You'), ' ', status),
    h('div', { class: 'bubble' }, linkified(text)),
  );
  el.outbox.append(li);
  const p: Pending = { text, li, status, state: 'queued' };
  state.pending.push(p);
  return p;
}

function dispatch(p: Pending): void {
  if (p.timer !== undefined) clearTimeout(p.timer);
  p.li.classList.remove('failed');
  if (state.phase === 'live' && socket.send({ type: 'send', text: p.text })) {
    p.state = 'sending';
    p.status.replaceChildren('Sending…');
    p.timer = setTimeout(() => fail(p, 'Not sent: no answer from the chat service.'), SEND_TIMEOUT_MS);
  } else {
    p.state = 'queued';
    p.status.replaceChildren('Waiting for the connection…');
  }
  persist();
}

function fail(p: Pending, why: string, canRetry = true): void {
  if (p.timer !== undefined) clearTimeout(p.timer);
  p.timer = undefined;
  p.state = 'failed';
  p.li.classList.add('failed');
  const retry = h('button', { type: 'button', class: 'link-button' }, 'Retry');
  retry.addEventListener('click', () => dispatch(p));
  const discard = h('button', { type: 'button', class: 'link-button' }, 'Discard');
  discard.addEventListener('click', () => drop(p));
  p.status.replaceChildren(why, ' ', ...(canRetry ? [retry, ' · '] : []), discard);
  // The status line is not a live region: say it, as agent messages and the chat's end are said.
  announce(`Your message was not sent: ${why}`);
  persist();
}

function drop(p: Pending): void {
  if (p.timer !== undefined) clearTimeout(p.timer);
  p.li.remove();
  state.pending = state.pending.filter((x) => x !== p);
  persist();
  el.message.focus();
}

/** The customer's own Message came back: its pending bubble goes (the event is shown instead). */
function confirmOwn(e: ChatEvent): void {
  const text = norm(e.text ?? '');
  const sent = state.pending.filter((p) => p.state !== 'queued');
  // Only a bubble with this very text: another tab's own message must not take away this tab's (a failed
  // one with its Retry). Without a match, this was sent from another tab and there is nothing to remove.
  const p = sent.find((x) => x.state !== 'failed' && norm(x.text) === text) ?? sent.find((x) => norm(x.text) === text);
  if (p === undefined) return;
  if (p.timer !== undefined) clearTimeout(p.timer);
  p.li.remove();
  state.pending = state.pending.filter((x) => x !== p);
}

function flushOutbox(): void {
  for (const p of state.pending) if (p.state === 'queued') dispatch(p);
}

function sendDraft(): void {
  if (state.ended) return;
  const text = el.message.value;
  if (norm(text) === '') {
    el.message.focus();
    return;
  }
  typing.stop();
  el.message.value = '';
  showNotice('');
  dispatch(queueMessage(norm(text)));
  scrollToEnd();
  el.message.focus();
}

// ---------------------------------------------------------------------------------------------------
// Files

async function refreshLimits(): Promise<FileLimits | undefined> {
  try {
    state.limits = await fetchLimits(state.token);
    el.file.accept = acceptList(state.limits);
  } catch {
    /* the check is repeated before each upload */
  }
  return state.limits;
}

async function sendFile(file: File): Promise<void> {
  if (state.uploading || state.ended) return;
  state.uploading = true;
  el.attach.disabled = true;
  showNotice('');
  el.uploadStatus.textContent = `Checking “${file.name}”…`;
  try {
    const limits = await fetchLimits(state.token);
    state.limits = limits;
    const why = refusal(limits, file, state.convo.agents().present.size > 0);
    if (why !== undefined) {
      el.uploadStatus.textContent = '';
      showNotice(why);
      return;
    }
    el.uploadStatus.textContent = `Sending “${file.name}”…`;
    await uploadFile(state.token, file);
    el.uploadStatus.textContent = `“${file.name}” sent.`;
    setTimeout(() => {
      if (el.uploadStatus.textContent === `“${file.name}” sent.`) el.uploadStatus.textContent = '';
    }, 4000);
    void refreshLimits();
  } catch (err) {
    el.uploadStatus.textContent = '';
    showNotice((err as Error).message);
  } finally {
    state.uploading = false;
    el.attach.disabled = false;
  }
}

async function download(fileId: string, name: string, button: HTMLButtonElement): Promise<void> {
  if (button.disabled) return;
  button.disabled = true;
  button.textContent = 'Downloading…';
  try {
    await downloadFile(state.token, fileId, name);
    showNotice('');
  } catch (err) {
    showNotice((err as Error).message);
  } finally {
    button.disabled = false;
    button.textContent = 'Download';
    button.focus();
  }
}

// ---------------------------------------------------------------------------------------------------
// Frames from the receiver

function onFrame(f: ServerFrame): void {
  switch (f.type) {
    case 'started': {
      const first = state.token === '';
      state.token = f.token;
      state.chatId = f.chatId;
      state.nickname = f.nickname;
      state.startRequest = undefined;
      state.phase = 'live';
      socket.established();
      if (first) {
        resetStartForm();
        showView('chat');
        renderHeader();
        el.message.focus();
        announce('Chat started. An agent will be with you soon.');
      }
      persist();
      flushOutbox();
      void refreshLimits();
      return;
    }
    case 'events':
      addEvents(f.events, true);
      if (f.chatEnded && !state.ended) setEnded();
      return;
    case 'error':
      onError(f.error);
      return;
    default:
      return;
  }
}

function onError(e: WireError): void {
  const message = e.message || 'Something went wrong.';
  if (state.phase === 'starting') {
    socket.stop();
    state.phase = 'idle';
    startFailed(message);
    return;
  }
  if (e.code === 'CHAT_ENDED') {
    setEnded();
    return;
  }
  if (state.phase === 'resuming') {
    if (e.code === 'ACCESS_DENIED' || e.code === 'NOT_FOUND' || e.code === 'UNKNOWN_CHAT') {
      setEnded('This chat can no longer be opened. You can start a new one.');
    } else socket.reconnectLater();
    return;
  }
  if (state.leaving) {
    state.leaving = false;
    el.leave.disabled = false;
    showNotice(`The chat could not be ended: ${message}`);
    return;
  }
  const p = state.pending.find((x) => x.state === 'sending');
  if (p !== undefined) fail(p, `Not sent: ${message}`);
  else showNotice(message);
}

// ---------------------------------------------------------------------------------------------------
// Start, leave, end, new chat

function startFailed(message: string): void {
  state.startRequest = undefined;
  resetStartForm();
  el.startError.textContent = message;
  showConn('hidden');
}

function resetStartForm(): void {
  el.startSubmit.disabled = false;
  el.startSubmit.textContent = 'Start chat';
  el.startForm.removeAttribute('aria-busy');
}

function startChat(): void {
  if (state.startRequest !== undefined) return;
  const nickname = el.name.value.trim();
  el.startError.textContent = '';
  el.name.removeAttribute('aria-invalid');
  if (nickname === '') {
    el.name.setAttribute('aria-invalid', 'true');
    el.startError.textContent = 'Please enter your name.';
    el.name.focus();
    return;
  }
  if (el.email.value.trim() !== '' && !el.email.checkValidity()) {
    el.startError.textContent = 'That email address does not look right; correct it or leave it empty.';
    el.email.focus();
    return;
  }
  state.subject = el.subject.value.trim();
  state.startRequest = { nickname, subject: state.subject, emailAddress: el.email.value.trim() };
  el.startSubmit.disabled = true;
  el.startSubmit.textContent = 'Starting…';
  el.startForm.setAttribute('aria-busy', 'true');
  socket.start();
}

function leaveChat(): void {
  if (state.ended) return;
  if (!(state.phase === 'live' && socket.send({ type: 'leave' }))) {
    showNotice('You are offline: the chat can be ended once the connection is back.');
    return;
  }
  typing.reset();
  state.leaving = true;
  el.leave.disabled = true;
}

function setEnded(reason = 'This chat has ended.'): void {
  const hadFocus = document.activeElement === document.body || el.chat.contains(document.activeElement);
  state.ended = true;
  state.phase = 'idle';
  typing.reset();
  socket.stop();
  for (const p of state.pending) if (p.state !== 'failed') fail(p, 'Not sent: the chat has ended.', false);
  el.composer.hidden = true;
  el.leave.hidden = true;
  el.ended.hidden = false;
  el.endedText.textContent = reason;
  showConn('hidden');
  renderHeader();
  renderTyping();
  persist();
  announce(reason);
  scrollToEnd();
  if (hadFocus || state.leaving) el.newChat.focus();
  state.leaving = false;
}

function newChat(): void {
  clearChat();
  socket.stop();
  const name = state.nickname;
  for (const p of state.pending) if (p.timer !== undefined) clearTimeout(p.timer);
  Object.assign(state, {
    token: '',
    chatId: '',
    subject: '',
    ended: false,
    phase: 'idle',
    convo: new Conversation(),
    pending: [],
    startRequest: undefined,
    limits: undefined,
    leaving: false,
  });
  el.transcript.replaceChildren();
  el.outbox.replaceChildren();
  el.composer.hidden = false;
  el.leave.hidden = false;
  el.leave.disabled = false;
  el.ended.hidden = true;
  el.message.value = '';
  showNotice('');
  el.uploadStatus.textContent = '';
  renderTyping();
  showConn('hidden');
  el.name.value = name;
  el.subject.value = '';
  el.startError.textContent = '';
  showView('start');
  (name === '' ? el.name : el.subject).focus();
}

// ---------------------------------------------------------------------------------------------------
// Wiring

el.startForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  startChat();
});

el.composer.addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendDraft();
});

el.message.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.altKey && !ev.ctrlKey && !ev.metaKey && !ev.isComposing) {
    ev.preventDefault();
    sendDraft();
  }
});

el.message.addEventListener('input', () => {
  if (state.phase === 'live') typing.input(el.message.value);
});

el.attach.addEventListener('click', () => {
  if (state.phase !== 'live') {
    showNotice('You are offline: files can be sent once the connection is back.');
    return;
  }
  el.file.click();
});

el.file.addEventListener('change', () => {
  const f = el.file.files?.[0];
  el.file.value = '';
  if (f !== undefined) void sendFile(f);
  el.message.focus();
});

el.leave.addEventListener('click', () => el.leaveDialog.showModal());
el.leaveCancel.addEventListener('click', () => el.leaveDialog.close());
el.leaveConfirm.addEventListener('click', () => {
  el.leaveDialog.close();
  leaveChat();
});

el.newChat.addEventListener('click', newChat);
el.jump.addEventListener('click', () => {
  scrollToEnd();
  el.message.focus();
});
el.scroller.addEventListener('scroll', () => {
  pinned = nearBottom();
  if (pinned) el.jump.hidden = true;
});
// The composer grows (a notice, a longer draft) or the window shrinks: stay at the end if we were.
new ResizeObserver(() => {
  if (pinned) scrollToEnd();
}).observe(el.scroller);

/** Test hook: simulate a network outage of `downMs`. */
(window as unknown as { __parleyChat: object }).__parleyChat = {
  dropSocket: (downMs: number) => socket.drop(downMs),
};

// ---------------------------------------------------------------------------------------------------
// Start-up: resume the chat this browser has, or offer to start one.

function boot(): void {
  const saved = loadChat();
  if (saved === undefined) {
    showView('start');
    return;
  }
  state.token = saved.token;
  state.chatId = saved.chatId;
  state.nickname = saved.nickname;
  state.subject = saved.subject;
  showView('chat');
  addEvents(saved.events, false);
  for (const text of saved.outbox) dispatch(queueMessage(text));
  // Not confirmed before the reload: shown as not sent, for the customer to retry (or confirmed by the
  // chat's events if the first try did arrive).
  for (const text of saved.unsent) fail(queueMessage(text), 'Not confirmed before the page was reloaded.');
  renderHeader();
  if (saved.ended) {
    setEnded();
    return;
  }
  socket.start();
}

boot();
