// The critical-finding alert banner, shown in every open worklist and viewer: one line per
// unacknowledged alert (level, reason, study, when raised) with "Open" and "Acknowledge".
// Filled from GET /api/alerts?unacknowledged=true, then kept current by the live events
// `alert` (a new one) and `alert-acknowledged` (gone everywhere, whoever acknowledged it).
import type { LiveEvent } from './live';
import { type Alert, ApiError, type WorklistItem, acknowledge, fmtTime, unacknowledgedAlerts, worklistItem } from './worklistApi';

/** A banner line: an alert (as GET /api/alerts lists it, or a live event's data) and its study's patient. */
type BannerAlert = Omit<Alert, 'StudyInstanceUID' | 'reason'> &
  Partial<Pick<Alert, 'StudyInstanceUID' | 'reason'>> &
  Partial<Pick<WorklistItem, 'PatientName' | 'PatientID' | 'StudyDescription'>>;

export interface AlertBanner {
  /** Feed a live event; returns true when it was an alert event. */
  onEvent: (e: LiveEvent) => boolean;
  reload: () => Promise<void>;
  count: () => number;
}

/** What an event's data holds: the alert itself, or `{StudyInstanceUID, alert, item}`. */
function alertOf(data: LiveEvent['data']): BannerAlert | undefined {
  const a = (data.alert ?? data) as BannerAlert | undefined;
  if (!a || a.id === undefined || a.id === null) return undefined;
  const item = data.item as Partial<WorklistItem> | undefined;
  return {
    ...a,
    StudyInstanceUID: a.StudyInstanceUID ?? (data.StudyInstanceUID as string | undefined) ?? item?.StudyInstanceUID,
    reason: a.reason ?? item?.reason,
    PatientName: a.PatientName ?? item?.PatientName,
    PatientID: a.PatientID ?? item?.PatientID,
    StudyDescription: a.StudyDescription ?? item?.StudyDescription,
  };
}

export function createAlertBanner(
  host: HTMLElement,
  opts: { describe?: (uid: string) => Partial<WorklistItem> | undefined; onAcknowledged?: (a: BannerAlert) => void } = {},
): AlertBanner {
  const alerts = new Map<string, BannerAlert>();
  // Alerts listed by GET /api/alerts carry no patient data: the study's item, asked once.
  const items = new Map<string, Partial<WorklistItem> | null>();
  const describe = (uid: string): Partial<WorklistItem> | undefined => {
    const known = opts.describe?.(uid) ?? items.get(uid) ?? undefined;
    if (known || items.has(uid)) return known;
    items.set(uid, null);
    void worklistItem(uid)
      .then((item) => {
        items.set(uid, item);
        render();
      })
      .catch(() => undefined);
    return undefined;
  };
  host.classList.add('alert-banner');
  host.setAttribute('role', 'alert');
  host.setAttribute('aria-live', 'assertive');

  const render = () => {
    const list = [...alerts.values()].sort((a, b) => String(b.raised_at).localeCompare(String(a.raised_at)));
    host.hidden = list.length === 0;
    host.replaceChildren(
      ...list.map((a) => {
        const known = a.StudyInstanceUID && !a.PatientName ? describe(a.StudyInstanceUID) : undefined;
        const row = document.createElement('div');
        row.className = `alert alert-${a.level}`;
        row.dataset.alertId = String(a.id);
        if (a.StudyInstanceUID) row.dataset.studyUid = a.StudyInstanceUID;
        const level = document.createElement('strong');
        level.className = 'alert-level';
        level.textContent = String(a.level || 'alert').toUpperCase();
        const text = document.createElement('span');
        text.className = 'alert-text';
        const who = [a.PatientName ?? known?.PatientName, a.PatientID ?? known?.PatientID, a.StudyDescription ?? known?.StudyDescription]
          .filter(Boolean)
          .map((s) => String(s).replaceAll('^', ' ').trim())
          .join(' · ');
        const reason = a.reason ?? known?.reason ?? '';
        text.textContent = [reason, who || (a.StudyInstanceUID ? `study ${a.StudyInstanceUID}` : ''), `raised ${fmtTime(a.raised_at)}`]
          .filter(Boolean)
          .join(' — ');
        row.append(level, text);
        if (a.StudyInstanceUID) {
          const open = document.createElement('a');
          open.className = 'alert-open';
          open.href = `/viewer?StudyInstanceUIDs=${encodeURIComponent(a.StudyInstanceUID)}`;
          open.textContent = 'Open';
          row.append(open);
        }
        const ack = document.createElement('button');
        ack.type = 'button';
        ack.className = 'alert-ack';
        ack.textContent = 'Acknowledge';
        ack.addEventListener('click', () => {
          ack.disabled = true;
          acknowledge(a.id)
            .then(() => {
              alerts.delete(String(a.id));
              render();
              opts.onAcknowledged?.(a);
            })
            .catch((err: unknown) => {
              ack.disabled = false;
              // Already acknowledged by someone else: it is gone anyway.
              if (err instanceof ApiError && (err.status === 404 || err.status === 409)) {
                alerts.delete(String(a.id));
                render();
                return;
              }
              ack.title = `Acknowledge failed: ${(err as Error).message}`;
              ack.textContent = 'Acknowledge (failed, retry)';
            });
        });
        row.append(ack);
        return row;
      }),
    );
  };

  const reload = async () => {
    try {
      const list = await unacknowledgedAlerts();
      alerts.clear();
      for (const a of list) if (!a.acknowledged_at) alerts.set(String(a.id), a);
    } catch {
      // No alerts API on this server (a plain DICOMweb server): no banner.
    }
    render();
  };

  render();
  void reload();
  return {
    reload,
    count: () => alerts.size,
    onEvent: (e) => {
      if (e.type === 'alert') {
        const a = alertOf(e.data);
        if (a && !a.acknowledged_at) {
          alerts.set(String(a.id), a);
          render();
        }
        return true;
      }
      if (e.type === 'alert-acknowledged') {
        const a = alertOf(e.data);
        const id = a?.id ?? (e.data.id as string | undefined) ?? (e.data.alert_id as string | undefined);
        if (id !== undefined) alerts.delete(String(id));
        else if (e.data.StudyInstanceUID) {
          for (const [k, v] of alerts) if (v.StudyInstanceUID === e.data.StudyInstanceUID) alerts.delete(k);
        }
        render();
        return true;
      }
      return false;
    },
  };
}
