import { useRef, useState } from 'preact/hooks';

const MIN = 20;
const MAX = 75;
const clamp = (v: number) => Math.min(MAX, Math.max(MIN, v));

/** The drag handle between the chat and the preview: pointer drag or arrow keys. */
export function Splitter({ value, onChange }: { value: number; onChange: (percent: number) => void }) {
  const [dragging, setDragging] = useState(false);
  const ref = useRef<HTMLDivElement>(null);

  function onPointerDown(event: PointerEvent) {
    if (event.button !== 0) return;
    const handle = ref.current;
    const container = handle?.parentElement;
    if (!handle || !container) return;
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    setDragging(true);
    document.body.classList.add('resizing');
    const rect = container.getBoundingClientRect();
    const move = (e: PointerEvent) => onChange(clamp(((e.clientX - rect.left) / rect.width) * 100));
    const up = (e: PointerEvent) => {
      handle.releasePointerCapture(e.pointerId);
      handle.removeEventListener('pointermove', move);
      handle.removeEventListener('pointerup', up);
      handle.removeEventListener('pointercancel', up);
      setDragging(false);
      document.body.classList.remove('resizing');
    };
    handle.addEventListener('pointermove', move);
    handle.addEventListener('pointerup', up);
    handle.addEventListener('pointercancel', up);
  }

  function onKeyDown(event: KeyboardEvent) {
    const step = event.shiftKey ? 10 : 2;
    if (event.key === 'ArrowLeft') onChange(clamp(value - step));
    else if (event.key === 'ArrowRight') onChange(clamp(value + step));
    else if (event.key === 'Home') onChange(MIN);
    else if (event.key === 'End') onChange(MAX);
    else return;
    event.preventDefault();
  }

  return (
    <div
      ref={ref}
      class={`splitter${dragging ? ' dragging' : ''}`}
      role="separator"
      aria-orientation="vertical"
      aria-label="Resize chat and preview"
      aria-valuemin={MIN}
      aria-valuemax={MAX}
      aria-valuenow={Math.round(value)}
      tabIndex={0}
      data-testid="pane-resizer"
      onPointerDown={onPointerDown}
      onKeyDown={onKeyDown}
      onDblClick={() => onChange(36)}
    >
      <span class="splitter-grip" aria-hidden="true" />
    </div>
  );
}
