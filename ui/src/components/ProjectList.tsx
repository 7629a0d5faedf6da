import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Project } from '../api';
import { linkClick } from '../router';
import { absoluteTime, relativeTime, useNow } from '../time';
import { ConfirmDialog } from './ConfirmDialog';
import { LineIcon } from './Icon';

export function ProjectList({ initialProjects }: { initialProjects: Project[] | null }) {
  const [projects, setProjects] = useState<Project[] | null>(initialProjects);
  const [error, setError] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<Project | null>(null);
  const [deleting, setDeleting] = useState(false);
  const now = useNow();

  useEffect(() => {
    const controller = new AbortController();
    api
      .listProjects(controller.signal)
      .then((list) => setProjects(list))
      .catch((err) => {
        if (!controller.signal.aborted) setError(errorMessage(err));
      });
    return () => controller.abort();
  }, []);

  async function confirmDelete() {
    if (!confirming) return;
    setDeleting(true);
    setError(null);
    try {
      await api.deleteProject(confirming.id);
      setProjects((list) => list?.filter((p) => p.id !== confirming.id) ?? null);
      setConfirming(null);
    } catch (err) {
      setError(`Could not delete “${confirming.name}”: ${errorMessage(err)}`);
      setConfirming(null);
    } finally {
      setDeleting(false);
    }
  }

  const sorted = projects ? [...projects].sort((a, b) => Date.parse(b.updatedAt) - Date.parse(a.updatedAt)) : null;

  return (
    <section class="projects" aria-labelledby="projects-title">
      <h2 id="projects-title" class="section-title">
        Your projects
      </h2>
      {error && (
        <p class="error-text" role="alert">
          {error}
        </p>
      )}
      {sorted === null ? (
        !error && (
          <p class="muted" aria-busy="true">
            <span class="spinner" aria-hidden="true" /> Loading projects…
          </p>
        )
      ) : sorted.length === 0 ? (
        <p class="muted empty" data-testid="projects-empty">
          No projects yet. Describe an app above to start one.
        </p>
      ) : (
        <ul class="project-grid" data-testid="project-list">
          {sorted.map((project) => {
            const href = `/projects/${encodeURIComponent(project.id)}`;
            return (
              <li key={project.id} class="project-item" data-testid="project-item" data-project-id={project.id}>
                <a class="project-link" href={href} onClick={(e) => linkClick(e, href)}>
                  <span class="project-avatar" aria-hidden="true">
                    {(project.name.trim()[0] ?? '?').toUpperCase()}
                  </span>
                  <span class="project-text">
                    <span class="project-name">{project.name}</span>
                    <span class="project-time muted" title={absoluteTime(project.updatedAt)}>
                      Updated {relativeTime(project.updatedAt, now)}
                    </span>
                  </span>
                </a>
                <button
                  type="button"
                  class="btn ghost icon-btn danger-hover"
                  aria-label={`Delete project ${project.name}`}
                  title="Delete project"
                  data-testid="project-delete"
                  onClick={() => setConfirming(project)}
                >
                  <LineIcon d="M4 7h16M10 11v6M14 11v6M6 7l1 12a2 2 0 002 2h6a2 2 0 002-2l1-12M9 7V4h6v3" size={17} weight={1.8} />
                </button>
              </li>
            );
          })}
        </ul>
      )}
      {confirming && (
        <ConfirmDialog
          title="Delete project?"
          confirmLabel={deleting ? 'Deleting…' : 'Delete'}
          busy={deleting}
          danger
          onConfirm={confirmDelete}
          onCancel={() => setConfirming(null)}
        >
          “{confirming.name}” and all its messages and versions will be deleted. This cannot be undone.
        </ConfirmDialog>
      )}
    </section>
  );
}
