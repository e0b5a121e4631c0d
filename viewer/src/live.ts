// Live worklist events: one EventSource on /api/worklist/events (Server-Sent Events, same-origin
// cookie auth). The browser reconnects by itself after a dropped connection and sends the last
// event id (Last-Event-ID), so the server replays what was missed. When the browser gives up
// (an HTTP error answer closes an EventSource for good) a new one is opened after a back-off,
// with the last id as `?since=` (a new EventSource cannot set the header), and the page
// is told to re-read its state (`onResync`), so nothing missed stays missing.
//
// A browser allows about 6 HTTP/1.1 connections per server, and each EventSource holds one for
// good: a reader with a worklist, a dashboard and a few viewer tabs would stall every other
// request. So all tabs share one EventSource in a SharedWorker (liveWorker.ts) that fans the
// events out; where SharedWorker does not exist (Android Chrome), each page opens its own.

export const EVENT_TYPES = ['study-added', 'study-updated', 'ai-result', 'status-changed', 'alert', 'alert-acknowledged'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface LiveEvent {
  type: EventType | 'message';
  id: string;
  data: { StudyInstanceUID?: string; [k: string]: unknown };
}

export interface LiveState {
  connected: boolean;
  events: number;
  reconnects: number;
  lastEventId: string;
}

export interface LiveOptions {
  url?: string;
  onEvent: (e: LiveEvent) => void;
  /** After a (re)connection that may have missed events: re-read the page's state. */
  onResync?: () => void;
  onState?: (s: LiveState) => void;
}

export interface LiveConnection {
  close: () => void;
  state: LiveState;
}

/** Messages from the shared worker to a page. */
export type WorkerMessage = { kind: 'event'; event: LiveEvent } | { kind: 'state'; state: LiveState } | { kind: 'resync' };

export function connectLive(opts: LiveOptions): LiveConnection {
  if (typeof SharedWorker === 'undefined' || opts.url) return openEventSource(opts);
  let worker: SharedWorker;
  try {
    worker = new SharedWorker(new URL('./liveWorker.ts', import.meta.url), { type: 'module', name: 'radsight-live' });
  } catch {
    return openEventSource(opts);
  }
  const state: LiveState = { connected: false, events: 0, reconnects: 0, lastEventId: '' };
  worker.port.onmessage = (m: MessageEvent<WorkerMessage>) => {
    const msg = m.data;
    if (msg.kind === 'event') {
      state.events += 1;
      state.lastEventId = msg.event.id || state.lastEventId;
      opts.onEvent(msg.event);
    } else if (msg.kind === 'state') {
      Object.assign(state, { ...msg.state, events: state.events });
      opts.onState?.(state);
    } else opts.onResync?.();
  };
  worker.port.start();
  return {
    state,
    close: () => {
      worker.port.postMessage('bye');
      worker.port.close();
    },
  };
}

/** One EventSource of this page's own (also what the shared worker runs). */
export function openEventSource(opts: LiveOptions): LiveConnection {
  const url = opts.url ?? '/api/worklist/events';
  const state: LiveState = { connected: false, events: 0, reconnects: 0, lastEventId: '' };
  let es: EventSource | undefined;
  let closed = false;
  let backoff = 1000;
  let timer: number | undefined;
  let everOpen = false;

  const report = () => opts.onState?.(state);

  const handle = (type: LiveEvent['type']) => (msg: MessageEvent) => {
    if (msg.lastEventId) state.lastEventId = msg.lastEventId;
    state.events += 1;
    let data: LiveEvent['data'] = {};
    try {
      data = msg.data ? JSON.parse(String(msg.data)) : {};
    } catch {
      data = {};
    }
    opts.onEvent({ type, id: msg.lastEventId, data });
  };

  const open = () => {
    if (closed) return;
    const sep = url.includes('?') ? '&' : '?';
    es = new EventSource(state.lastEventId ? `${url}${sep}since=${encodeURIComponent(state.lastEventId)}` : url, {
      withCredentials: true,
    });
    for (const t of EVENT_TYPES) es.addEventListener(t, handle(t) as EventListener);
    es.addEventListener('message', handle('message') as EventListener);
    es.addEventListener('open', () => {
      backoff = 1000;
      const resync = everOpen; // the first open follows the page's own first read
      everOpen = true;
      state.connected = true;
      report();
      if (resync) opts.onResync?.();
    });
    es.addEventListener('error', () => {
      state.connected = false;
      report();
      if (es?.readyState === EventSource.CLOSED) {
        // The browser gave up (HTTP error, wrong type): open a new one later.
        es.close();
        state.reconnects += 1;
        clearTimeout(timer);
        timer = setTimeout(open, backoff) as unknown as number;
        backoff = Math.min(backoff * 2, 30_000);
      } else {
        // CONNECTING: the browser retries itself, with Last-Event-ID.
        state.reconnects += 1;
      }
    });
  };
  open();
  return {
    state,
    close: () => {
      closed = true;
      clearTimeout(timer);
      es?.close();
    },
  };
}

/** Calls `fn` once, `ms` after the last of a burst of calls. */
export function debounce(fn: () => void, ms: number): () => void {
  let t: number | undefined;
  return () => {
    window.clearTimeout(t);
    t = window.setTimeout(fn, ms);
  };
}
