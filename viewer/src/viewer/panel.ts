// A floating panel with a title and a close button (one per id at a time).
export function closablePanel(id: string, title: string, ...content: HTMLElement[]): HTMLElement {
  document.getElementById(id)?.remove();
  const panel = document.createElement('div');
  panel.id = id;
  panel.className = 'panel';
  panel.setAttribute('role', 'dialog');
  const h = document.createElement('h2');
  h.textContent = title;
  const close = document.createElement('button');
  close.type = 'button';
  close.textContent = '×';
  close.setAttribute('aria-label', 'Close');
  close.addEventListener('click', () => panel.remove());
  h.append(close);
  panel.append(h, ...content);
  document.body.append(panel);
  return panel;
}
