# The forgeai-v1 template for E2B, generated from forgeai's recipe (crates/sandbox/src/local/build);
# `cargo test -p forgeai-sandbox e2b_template` checks this copy and says how to rewrite it.
FROM node:22-bookworm-slim
SHELL ["/bin/bash", "-c"]
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
ENV NEXT_TELEMETRY_DISABLED=1
WORKDIR /home/user/project
# create-next-app
RUN npx --yes create-next-app@15.5.28 forgeai-app --yes --ts --tailwind --app --turbopack --use-npm --no-src-dir --no-eslint --import-alias '@/*' && shopt -s dotglob && mv forgeai-app/* . && rmdir forgeai-app && rm -rf .git
# install packages
RUN npm install --no-audit --no-fund --save-exact next@15.5.29 react@19.1.10 react-dom@19.1.10 geist@1.9.2 class-variance-authority@0.7.1 clsx@2.1.1 tailwind-merge@3.7.1 tw-animate-css@1.4.0 lucide-react@0.577.0 recharts@2.15.4 framer-motion@12.43.0 react-hook-form@7.92.0 @hookform/resolvers@5.2.2 zod@3.25.76 date-fns@4.4.0 react-day-picker@9.14.0 sonner@2.0.8 next-themes@0.4.6 vaul@1.1.2 cmdk@1.1.1 embla-carousel-react@8.6.0 input-otp@1.5.0 react-resizable-panels@3.0.6 @tanstack/react-table@8.21.3 @radix-ui/react-accordion@1.3.1 @radix-ui/react-alert-dialog@1.2.1 @radix-ui/react-aspect-ratio@1.2.0 @radix-ui/react-avatar@1.3.1 @radix-ui/react-checkbox@1.4.1 @radix-ui/react-collapsible@1.2.1 @radix-ui/react-context-menu@2.4.1 @radix-ui/react-dialog@1.3.1 @radix-ui/react-dropdown-menu@2.2.1 @radix-ui/react-hover-card@1.2.1 @radix-ui/react-label@2.1.17 @radix-ui/react-menubar@1.2.1 @radix-ui/react-navigation-menu@1.4.1 @radix-ui/react-popover@1.3.1 @radix-ui/react-progress@1.2.1 @radix-ui/react-radio-group@1.5.1 @radix-ui/react-scroll-area@1.4.0 @radix-ui/react-select@2.4.1 @radix-ui/react-separator@1.2.0 @radix-ui/react-slider@1.6.1 @radix-ui/react-slot@1.5.0 @radix-ui/react-switch@1.4.1 @radix-ui/react-tabs@1.2.1 @radix-ui/react-toggle@1.2.1 @radix-ui/react-toggle-group@1.2.1 @radix-ui/react-tooltip@1.4.1 && npm install --no-audit --no-fund --save-exact --save-dev tailwindcss@4.3.5 @tailwindcss/postcss@4.3.5 typescript@5.9.3
COPY files/.forgeai-copy-components.mjs .forgeai-copy-components.mjs
# copy components
RUN set -e; dir=$(mktemp -d); npm pack --silent --pack-destination "$dir" shadcn-packaged@2025.12.15 >/dev/null; tar -xzf "$dir"/*.tgz -C "$dir"; SHADCN_DIR="$dir/package" node .forgeai-copy-components.mjs; cp "$dir/package/index.css" app/globals.css; rm -rf "$dir" .forgeai-copy-components.mjs
COPY files/.forgeai-font-theme.css .forgeai-font-theme.css
# fonts
RUN cat .forgeai-font-theme.css >> app/globals.css && rm .forgeai-font-theme.css
COPY files/app/layout.tsx app/layout.tsx
COPY files/app/page.tsx app/page.tsx
COPY files/hooks/use-toast.ts hooks/use-toast.ts
COPY files/components/ui/use-toast.ts components/ui/use-toast.ts
COPY files/components/ui/toaster.tsx components/ui/toaster.tsx
COPY files/.forgeai-patch-config.mjs .forgeai-patch-config.mjs
# next.config.ts
RUN node .forgeai-patch-config.mjs && rm .forgeai-patch-config.mjs
COPY files/.forgeai-smoke-test.sh .forgeai-smoke-test.sh
# smoke test
RUN bash .forgeai-smoke-test.sh && rm .forgeai-smoke-test.sh
# clean
RUN rm -rf .next
COPY start.sh /forgeai/start.sh
RUN chmod 755 /forgeai/start.sh
