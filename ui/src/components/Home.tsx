import { useState } from 'preact/hooks';
import { api, type Project } from '../api';
import { navigate } from '../router';
import { Composer } from './Composer';
import { ProjectList } from './ProjectList';

export const EXAMPLES: { label: string; prompt: string }[] = [
  {
    label: 'Landing page',
    prompt:
      'Build a modern landing page for a coffee subscription startup: hero with a call to action, features grid, pricing with three tiers, testimonials and a footer.',
  },
  {
    label: 'Kanban board',
    prompt:
      'Build a kanban board with To do, In progress and Done columns, drag-and-drop cards, adding and editing cards, and local storage persistence.',
  },
  {
    label: 'Netflix clone',
    prompt:
      "Build a Netflix-style home page layout: a hero banner for a featured title and horizontally scrolling rows of movie posters by category, dark theme.",
  },
  {
    label: 'Admin dashboard',
    prompt:
      'Build an analytics dashboard with a sidebar, KPI cards, a revenue line chart, a traffic-by-source bar chart and a recent orders table with sorting.',
  },
  {
    label: 'Todo app',
    prompt: 'Build a todo app with filters (all, active, completed), inline editing, a clear-completed button and local storage.',
  },
  {
    label: 'Weather app',
    prompt: 'Build a weather app UI with a city search, current conditions card and a 7-day forecast with icons, using mock data.',
  },
];

export function Home({ initialProjects }: { initialProjects: Project[] | null }) {
  const [fill, setFill] = useState<{ text: string; nonce: number } | null>(null);

  async function create(message: string, imageUrl?: string) {
    const project = await api.createProject(message, imageUrl);
    navigate(`/projects/${encodeURIComponent(project.id)}`);
    return true;
  }

  return (
    <div class="home">
      <section class="hero" aria-labelledby="hero-title">
        <h1 id="hero-title" class="hero-title">
          What do you want to build?
        </h1>
        <p class="hero-sub muted">Describe an app or attach a screenshot, and forgeai builds it with a live preview.</p>
        <Composer
          variant="hero"
          placeholder="Ask forgeai to build a web app…"
          submitLabel="Build"
          onSubmit={create}
          fill={fill}
          autofocus
        />
        <ul class="chips" aria-label="Example prompts">
          {EXAMPLES.map((example) => (
            <li key={example.label}>
              <button
                type="button"
                class="chip"
                data-testid="example-prompt"
                title={example.prompt}
                onClick={() => setFill({ text: example.prompt, nonce: Date.now() })}
              >
                {example.label}
              </button>
            </li>
          ))}
        </ul>
      </section>
      <ProjectList initialProjects={initialProjects} />
    </div>
  );
}
