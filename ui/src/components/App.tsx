import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, ApiError, errorMessage, onUnauthorized, type Project } from '../api';
import { linkClick, usePath } from '../router';
import { Home } from './Home';
import { ProjectPage } from './ProjectPage';
import { SignIn } from './SignIn';
import { TokensPage } from './TokensPage';

type Auth = { state: 'checking' } | { state: 'in'; projects: Project[] | null } | { state: 'out' } | { state: 'error'; message: string };

export function App() {
  const path = usePath();
  const [auth, setAuth] = useState<Auth>({ state: 'checking' });

  const check = useCallback(async () => {
    setAuth({ state: 'checking' });
    try {
      const projects = await api.listProjects();
      setAuth({ state: 'in', projects });
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) setAuth({ state: 'out' });
      else setAuth({ state: 'error', message: errorMessage(error) });
    }
  }, []);

  useEffect(() => {
    onUnauthorized(() => setAuth({ state: 'out' }));
    void check();
    return () => onUnauthorized(null);
  }, [check]);

  const projectMatch = /^\/projects\/([^/]+)\/?$/.exec(path);

  const signedOut = useCallback(() => setAuth({ state: 'out' }), []);
  async function signOut() {
    try {
      await api.signOut();
    } finally {
      signedOut();
    }
  }

  let main;
  if (auth.state === 'checking') {
    main = (
      <div class="center-page" aria-busy="true">
        <span class="spinner" aria-hidden="true" /> <span class="muted">Loading…</span>
      </div>
    );
  } else if (auth.state === 'out') {
    main = <SignIn onSignedIn={check} />;
  } else if (auth.state === 'error') {
    main = (
      <div class="center-page">
        <div class="card narrow">
          <h1 class="h2">Cannot load forgeai</h1>
          <p class="error-text" role="alert">
            {auth.message}
          </p>
          <button type="button" class="btn primary" onClick={check}>
            Try again
          </button>
        </div>
      </div>
    );
  } else if (path === '/' || path === '/projects' || path === '/projects/') {
    main = <Home initialProjects={auth.projects} />;
  } else if (path === '/tokens' || path === '/tokens/') {
    main = <TokensPage onSignedOut={signedOut} />;
  } else if (projectMatch) {
    main = <ProjectPage key={projectMatch[1]} projectId={decodeURIComponent(projectMatch[1])} />;
  } else {
    main = (
      <div class="center-page">
        <div class="card narrow">
          <h1 class="h2">Page not found</h1>
          <p class="muted">Nothing lives at {path}.</p>
          <a class="btn primary" href="/" onClick={(e) => linkClick(e, '/')}>
            Go home
          </a>
        </div>
      </div>
    );
  }

  const onProjectPage = !!projectMatch && auth.state === 'in';
  return (
    <div class={onProjectPage ? 'app app-fixed' : 'app'}>
      {!onProjectPage && (
        <header class="topbar">
          <a class="brand" href="/" onClick={(e) => linkClick(e, '/')} aria-label="forgeai home">
            <Logo /> forgeai
          </a>
          {auth.state === 'in' && (
            <nav class="topbar-nav" aria-label="Account">
              <a class="btn ghost small" href="/tokens" onClick={(e) => linkClick(e, '/tokens')} data-testid="nav-tokens">
                Tokens
              </a>
              <button type="button" class="btn ghost small" onClick={() => void signOut()} data-testid="sign-out">
                Sign out
              </button>
            </nav>
          )}
        </header>
      )}
      <main class="main" id="main">
        {main}
      </main>
    </div>
  );
}

export function Logo() {
  return (
    <svg class="logo" viewBox="0 0 32 32" width="22" height="22" aria-hidden="true">
      <rect width="32" height="32" rx="8" fill="currentColor" />
      <path d="M10 22V10h12v3h-8.5v2H20v3h-6.5v4z" fill="#fff" />
    </svg>
  );
}
