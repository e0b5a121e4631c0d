// The page's status line and toasts, and errors put into words.
import { PREVIEW_STATUS, handoff } from './previewHandoff';
import { dom, state } from './state';

export function setStatus(text: string): void {
  state.statusText = text;
  // While the preview shows, the page says so (progress comes back when it goes).
  const previewShown = !handoff.done && handoff.canvas?.isConnected;
  dom.loadStatus.textContent = previewShown && !text.startsWith('Could') ? PREVIEW_STATUS : text;
}

export function toast(text: string): void {
  const el = document.createElement('div');
  el.className = 'toast';
  el.textContent = text;
  document.body.append(el);
  setTimeout(() => el.remove(), 3500);
}

/** An error's message, whatever was thrown (Cornerstone's load errors are plain objects). */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object') {
    const e = err as { error?: { message?: string; status?: number }; message?: string };
    return e.error?.message ?? e.message ?? JSON.stringify(err).slice(0, 200);
  }
  return String(err);
}
