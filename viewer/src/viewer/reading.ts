// The viewer's part of the reading workflow (issue 6): claim the study on open (so two readers
// do not read the same study), heartbeat while open, release on leaving; a clear read-only notice
// naming the holder when someone else has it; "Sign off" with the findings' accept / reject
// decisions (the server answers 409 naming pending findings); the order-priority control; the
// critical-alert banner, kept live by the worklist events.
import { createAlertBanner } from '../alerts';
import { connectLive } from '../live';
import {
  ApiError,
  type OrderPriority,
  type WorklistItem,
  claim,
  fmtTime,
  heartbeat,
  me,
  releaseOnExit,
  setOrderPriority,
  sign,
} from '../worklistApi';

export interface ReadingHost {
  studyUID: string;
  /** The findings panel's current decisions (loads the AI module if needed). */
  findings: () => Promise<{ id: number | string; status: 'pending' | 'accepted' | 'rejected'; label?: string }[]>;
  toast: (text: string) => void;
}

export type ClaimState = 'none' | 'mine' | 'locked' | 'read' | 'error';

/** Test hook (`__radsight.reading`): what the bar shows; tests assert on the DOM. */
export interface ReadingState {
  claim: ClaimState;
  holder: string | null;
  heartbeats: number;
  signed: boolean;
  lastError: string;
}

const HEARTBEAT_MS = 20_000;

/** The server's ISO times in a message, as local times ("claimed by X since 10:42"). */
function readable(detail: string): string {
  return detail.replace(/\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?/g, (t) => fmtTime(t));
}

const capitalise = (t: string) => t.charAt(0).toUpperCase() + t.slice(1);

function make<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Partial<HTMLElementTagNameMap[K]>,
  attrs: Record<string, string> = {},
): HTMLElementTagNameMap[K] {
  const e = Object.assign(document.createElement(tag), props);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

export function initReading(host: ReadingHost, state: ReadingState): void {
  const topbar = document.querySelector<HTMLElement>('.topbar')!;
  const bar = make('div', { className: 'reading-bar', id: 'reading-bar', hidden: true });
  const chip = make('span', { className: 'claim', id: 'claim-status' }, { role: 'status' });
  const prioLabel = make('label', { className: 'muted', textContent: 'Priority ' });
  const prio = make('select', { id: 'order-priority' }, { 'aria-label': 'Order priority' });
  const choices = [['', '(from AI / order)'], ['STAT', 'STAT'], ['URGENT', 'Urgent'], ['ROUTINE', 'Routine']];
  prio.append(...choices.map(([value, textContent]) => make('option', { value, textContent })));
  prioLabel.append(prio);
  const signBtn = make('button', {
    type: 'button',
    className: 'sign',
    id: 'sign-off',
    textContent: 'Sign off',
    title: 'Sign the study off with your decisions on its AI findings',
  });
  const signError = make('span', { className: 'sign-error', id: 'sign-error' }, { role: 'alert' });
  const retry = make('button', { type: 'button', textContent: 'Claim', hidden: true });
  bar.append(chip, retry, prioLabel, signBtn, signError);
  topbar.querySelector('.spacer')?.after(bar);

  const alertsEl = make('div', { id: 'alerts', hidden: true });
  topbar.after(alertsEl);
  const banner = createAlertBanner(alertsEl);

  let username = '';
  let timer: number | undefined;

  const show = (s: ClaimState, item?: Partial<WorklistItem> | null, detail = '') => {
    state.claim = s;
    state.holder = item?.claimed_by ?? null;
    chip.className = `claim ${s}`;
    document.body.classList.toggle('read-only', s === 'locked');
    retry.hidden = s !== 'locked' && s !== 'error';
    signBtn.disabled = s !== 'mine';
    prio.disabled = s === 'locked';
    if (item && 'order_priority' in item) prio.value = item.order_priority ?? '';
    if (s === 'mine') chip.textContent = 'In progress — you';
    else if (s === 'locked') chip.textContent = `Read-only: ${detail || `claimed by ${item?.claimed_by ?? 'another reader'}`}`;
    else if (s === 'read') chip.textContent = item ? `Read by ${item.signed_by ?? '?'}${item.signed_at ? ` at ${fmtTime(item.signed_at)}` : ''}` : capitalise(detail);
    else if (s === 'error') chip.textContent = detail;
    else chip.textContent = '';
    chip.title = chip.textContent ?? '';
  };

  const stopHeartbeat = () => {
    window.clearInterval(timer);
    timer = undefined;
  };

  const doClaim = async () => {
    try {
      const item = await claim(host.studyUID);
      bar.hidden = false;
      if (item?.status === 'read') {
        show('read', item);
        return;
      }
      show('mine', item);
      stopHeartbeat();
      timer = window.setInterval(() => {
        heartbeat(host.studyUID)
          .then(() => (state.heartbeats += 1))
          .catch((err: unknown) => {
            if (err instanceof ApiError && err.status === 409) {
              // The claim lapsed and someone else took the study.
              stopHeartbeat();
              show('locked', null, readable(err.detail));
            }
          });
      }, HEARTBEAT_MS);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        // No worklist API on this server (a plain DICOMweb server), or a study it does not list.
        bar.hidden = true;
        return;
      }
      bar.hidden = false;
      // 409: "claimed by X since T" (locked) or "read by X at T" (signed off already).
      if (err instanceof ApiError && err.status === 409) show(/^read by/i.test(err.detail) ? 'read' : 'locked', null, readable(err.detail));
      else show('error', null, `Claim failed: ${(err as Error).message}`);
      state.lastError = (err as Error).message;
    }
  };

  retry.addEventListener('click', () => void doClaim());

  signBtn.addEventListener('click', async () => {
    signBtn.disabled = true;
    signError.textContent = '';
    try {
      const findings = await host.findings();
      const decisions = findings
        .filter((f) => f.status === 'accepted' || f.status === 'rejected')
        .map((f) => ({ finding_id: f.id, status: f.status as 'accepted' | 'rejected' }));
      const item = await sign(host.studyUID, decisions);
      stopHeartbeat();
      state.signed = true;
      show('read', { ...item, signed_by: item?.signed_by ?? username, signed_at: item?.signed_at ?? new Date().toISOString() });
      host.toast('Signed off');
    } catch (err) {
      const msg = err instanceof ApiError ? err.detail : (err as Error).message;
      state.lastError = msg;
      signError.textContent = err instanceof ApiError && err.status === 409 ? `Cannot sign off: ${msg}` : `Sign-off failed: ${msg}`;
      signBtn.disabled = state.claim !== 'mine';
    }
  });

  prio.addEventListener('change', async () => {
    const value = (prio.value || null) as OrderPriority | null;
    try {
      const item = await setOrderPriority(host.studyUID, value);
      host.toast(`Priority: ${item?.priority ?? value ?? 'from AI / order'}${item?.reason ? ` (${item.reason})` : ''}`);
    } catch (err) {
      host.toast(`Setting the priority failed: ${(err as Error).message}`);
    }
  });

  // Leaving the page gives the study back (unless signed: the server keeps it read).
  window.addEventListener('pagehide', () => {
    if (state.claim === 'mine' && !state.signed) releaseOnExit(host.studyUID);
    stopHeartbeat();
  });

  // Back to this page from the browser's back-forward cache: the claim was released on leaving.
  window.addEventListener('pageshow', (e) => {
    if (e.persisted && (state.claim === 'mine' || state.claim === 'locked') && !state.signed) void doClaim();
  });

  void me().then((u) => (username = u?.username ?? ''));
  void doClaim();

  // Live: the alert banner, and this study's status changed by someone else.
  connectLive({
    onEvent: (e) => {
      if (banner.onEvent(e)) return;
      if (e.type !== 'status-changed' || e.data.StudyInstanceUID !== host.studyUID) return;
      const item = (e.data.item ?? e.data) as Partial<WorklistItem>;
      if (state.claim === 'locked' && item.status === 'unread') show('locked', item, 'released by the other reader — press Claim');
      else if (item.status === 'read' && state.claim !== 'read') {
        stopHeartbeat();
        show('read', item);
      }
    },
    onResync: () => void banner.reload(),
  });
}
