// Thin client for the forgeai HTTP API (same origin, cookie session).

import type { components } from './api.gen';

// The API's types, generated from the server's OpenAPI document (`npm run gen:api`).
type Schemas = components['schemas'];

export type Project = Schemas['Project'];
/** A link that opens a project's preview in this browser (the grant is short-lived). */
export type PreviewLink = Schemas['PreviewLink'];
export type TokenKind = Schemas['TokenKind'];
/** One of the user's tokens; never its secret. */
export type Token = Schemas['TokenView'];
/** A fragment as the chat lists it: its files' paths and sizes; the contents come from `api.getFragment`. */
export type Fragment = Schemas['FragmentSummary'];
export type Role = Schemas['MessageRole'];
export type MessageType = Schemas['MessageType'];
export type Message = Omit<Schemas['ListedMessage'], 'codeFragment'> & {
  codeFragment?: Fragment | null;
  /** Client-side only: an optimistic message not yet confirmed by the server. */
  pending?: boolean;
};
export type RunStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';
export type Run = Omit<Schemas['RunSummary'], 'status'> & { status: RunStatus };
/** A fragment with its files, path → content (`GET`/`PATCH /api/fragments/{id}`). */
export type FragmentWithFiles = Schemas['Fragment'];
export type Version = Schemas['Version'];
export type VersionDiff = Schemas['VersionDiff'];
export type Restored = Schemas['Restored'];

/** An event of a project's `agentActivity` realtime topic. */
export type Activity = Schemas['Activity'];

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

type UnauthorizedListener = () => void;
let unauthorizedListener: UnauthorizedListener | null = null;

/** Called whenever an API call answers 401 (the session is missing or expired). */
export function onUnauthorized(listener: UnauthorizedListener | null) {
  unauthorizedListener = listener;
}

async function errorFrom(response: Response): Promise<ApiError> {
  let message = `${response.status} ${response.statusText || 'error'}`.trim();
  try {
    const text = await response.text();
    if (text) {
      try {
        const body = JSON.parse(text) as { error?: unknown; message?: unknown };
        if (typeof body.error === 'string' && body.error) message = body.error;
        else if (typeof body.message === 'string' && body.message) message = body.message;
      } catch {
        if (text.length < 300) message = text;
      }
    }
  } catch {
    /* keep the status line */
  }
  return new ApiError(response.status, message);
}

interface RequestOptions {
  body?: unknown;
  form?: FormData;
  /** Don't treat a 401 as "signed out" (used by the sign-in form itself). */
  quiet401?: boolean;
  signal?: AbortSignal;
}

async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  let body: BodyInit | undefined;
  if (options.form) {
    body = options.form;
  } else if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(options.body);
  }
  let response: Response;
  try {
    response = await fetch(path, { method, headers, body, credentials: 'same-origin', signal: options.signal });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, 'Cannot reach the forgeai server. Check that it is running.');
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && !options.quiet401) unauthorizedListener?.();
    throw error;
  }
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

const enc = encodeURIComponent;

export const api = {
  signIn: (token: string) => request<void>('POST', '/api/session', { body: { token }, quiet401: true }),
  signOut: () => request<void>('DELETE', '/api/session', { quiet401: true }),
  listTokens: () => request<Token[]>('GET', '/api/tokens'),
  revokeToken: (id: string) => request<void>('DELETE', `/api/tokens/${enc(id)}`),

  listProjects: (signal?: AbortSignal) => request<Project[]>('GET', '/api/projects', { signal }),
  getProject: (id: string) => request<Project>('GET', `/api/projects/${enc(id)}`),
  createProject: (message: string, imageUrl?: string) =>
    request<Project>('POST', '/api/projects', { body: imageUrl ? { message, imageUrl } : { message } }),
  deleteProject: (id: string) => request<void>('DELETE', `/api/projects/${enc(id)}`),
  setPublic: (id: string, isPublic: boolean) =>
    request<Project>('PATCH', `/api/projects/${enc(id)}`, { body: { public: isPublic } }),
  previewLink: (id: string) => request<PreviewLink>('GET', `/api/projects/${enc(id)}/preview`),
  listRuns: (projectId: string) => request<Run[]>('GET', `/api/projects/${enc(projectId)}/runs`),
  cancelRun: (runId: string) => request<Run>('POST', `/api/runs/${enc(runId)}/cancel`),
  listVersions: (projectId: string) => request<Version[]>('GET', `/api/projects/${enc(projectId)}/versions`),
  diffVersions: (projectId: string, from: string, to: string) =>
    request<VersionDiff>('GET', `/api/projects/${enc(projectId)}/versions/${enc(from)}/diff/${enc(to)}`),
  restoreVersion: (projectId: string, versionId: string) =>
    request<Restored>('POST', `/api/projects/${enc(projectId)}/versions/${enc(versionId)}/restore`),
  saveVersion: (projectId: string, files: Record<string, string>) =>
    request<Restored>('POST', `/api/projects/${enc(projectId)}/versions`, { body: { files } }),
  exportUrl: (projectId: string) => `/api/projects/${enc(projectId)}/export.zip`,

  listMessages: (projectId: string) => request<Message[]>('GET', `/api/messages?projectId=${enc(projectId)}`),
  createMessage: (projectId: string, message: string, imageUrl?: string) =>
    request<Message>('POST', '/api/messages', {
      body: imageUrl ? { message, projectId, imageUrl } : { message, projectId },
    }),

  getFragment: (fragmentId: string) => request<FragmentWithFiles>('GET', `/api/fragments/${enc(fragmentId)}`),

  upload: (file: File) => {
    const form = new FormData();
    form.append('file', file, file.name);
    return request<{ url: string }>('POST', '/api/uploads', { form });
  },

  // From the first kept status: a run that started before the page connected is not missed.
  // (On reconnects the browser sends Last-Event-ID, which the server prefers.)
  realtimeUrl: (projectId: string) => `/api/projects/${enc(projectId)}/realtime?lastEventId=0`,
};

export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
