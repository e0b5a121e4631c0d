// The shared worker behind connectLive(): one EventSource on /api/worklist/events for all of
// this browser's RadSight tabs (worklist, viewers, dashboard), its events fanned out to each.
// It opens on the first tab and closes when the last one says goodbye.
import { type LiveConnection, type WorkerMessage, openEventSource } from './live';

// The page build's TypeScript lib is DOM, not WebWorker: the one member used here.
const scope = self as unknown as { onconnect: ((e: MessageEvent) => void) | null };

const ports = new Set<MessagePort>();
let live: LiveConnection | undefined;

function broadcast(msg: WorkerMessage): void {
  for (const p of ports) p.postMessage(msg);
}

scope.onconnect = (e: MessageEvent) => {
  const port = e.ports[0];
  ports.add(port);
  port.onmessage = (m: MessageEvent) => {
    if (m.data !== 'bye') return;
    ports.delete(port);
    if (!ports.size) {
      live?.close();
      live = undefined;
    }
  };
  port.start();
  if (!live) {
    live = openEventSource({
      onEvent: (event) => broadcast({ kind: 'event', event }),
      onState: (state) => broadcast({ kind: 'state', state: { ...state } }),
      onResync: () => broadcast({ kind: 'resync' }),
    });
  } else {
    // A tab that joins late: the connection's state now; it reads its own data first anyway.
    port.postMessage({ kind: 'state', state: { ...live.state } } satisfies WorkerMessage);
  }
};
