// The case room's hook for DICOM stacks: the room page hands every material it opens and every
// presenter view it receives to this object first; a stack is shown in the StackViewer (in
// place of the slide viewer), anything else goes on to the slide viewer as before. Follow the
// presenter carries the stack's slice and window in the viewport's optional `stack` field. The
// stack viewer is also the surface the annotation layer draws on while a stack is shown.
import type { PublicMaterial } from '../../../src/protocol/cases';
import type { Viewport, viewportSchema } from '../../../src/protocol/realtime';
import type { z } from 'zod';
import { isStack, StackViewer } from './StackViewer';

export class StackRoomHook {
  readonly viewer: StackViewer;

  constructor(
    private readonly slideElement: HTMLElement,
    api: { get<T>(url: string): Promise<T> },
    events: { changed(): void; userMoved(): void },
  ) {
    this.viewer = new StackViewer((url) => api.get(url));
    this.viewer.onChange(() => events.changed());
    this.viewer.onUserMove(() => events.userMoved());
  }

  /**
   * Opens `material` when it is a stack (true), applying `pending` (a presenter view that asked
   * for it) once open; otherwise closes the stack and gives the slide viewer its place (false).
   */
  async open(material: PublicMaterial, pending: Viewport | null): Promise<boolean> {
    if (!isStack(material)) {
      this.viewer.close();
      this.slideElement.hidden = false;
      return false;
    }
    if (!this.viewer.element.isConnected) this.slideElement.after(this.viewer.element);
    this.slideElement.hidden = true;
    await this.viewer.open(material);
    if (pending?.materialId === material.id && pending.stack) this.viewer.apply(pending.stack);
    return true;
  }

  /** What the presenter sends while a stack is shown, or null (the slide viewer's view is sent). */
  viewport(caseId: string): z.input<typeof viewportSchema> | null {
    const view = this.viewer.view();
    const materialId = this.viewer.materialId;
    if (!view || !materialId) return null;
    return { caseId, materialId, center: { x: 0.5, y: 0.5 }, zoom: 1, rotation: 0, stack: view };
  }

  /** Stops the viewer's observers and listeners (the page is leaving). */
  destroy(): void {
    this.viewer.close();
    this.viewer.destroy();
  }

  /** Applies a presenter view of the stack already shown (true), or leaves it to the page (false). */
  apply(v: Viewport): boolean {
    if (!v.stack || v.materialId !== this.viewer.materialId || !this.viewer.isOpen) return false;
    this.viewer.apply(v.stack);
    return true;
  }
}
