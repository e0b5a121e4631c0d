// Names for the REST API's JSON, from the types generated out of its OpenAPI document
// (schema.d.ts: `npm run openapi`; never edit it by hand). Import these, not hand-written twins.
import type { components } from './schema';

type Schemas = components['schemas'];
export type WorklistItem = Schemas['WorklistItem'];
export type WorklistPage = Schemas['WorklistPage'];
export type AiSummary = Schemas['AISummary'];
export type AlertSummary = Schemas['AlertSummary'];
export type Alert = Schemas['Alert'];
export type SignDecision = Schemas['Decision'];
export type Turnaround = Schemas['Turnaround'];
export type TurnaroundStudy = Schemas['TurnaroundStudy'];
export type Finding = Schemas['Finding'];
export type Job = Schemas['Job'];
export type RunResponse = Schemas['RunResponse'];
export type ModelOut = Schemas['ModelOut'];
export type ModelDetail = Schemas['ModelDetail'];
export type Me = Schemas['UserOut'];
export type Priority = WorklistItem['priority'];
export type ReadStatus = WorklistItem['status'];
export type OrderPriority = NonNullable<WorklistItem['order_priority']>;
