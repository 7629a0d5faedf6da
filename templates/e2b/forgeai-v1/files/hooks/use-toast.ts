// The older shadcn/ui toast API (`useToast`, `toast({ title, description, variant })`), which
// models often write, on top of sonner: the `<Toaster />` in app/layout.tsx shows these toasts.
import type { ReactNode } from "react";
import { toast as sonner } from "sonner";

export type ToastProps = {
  title?: ReactNode;
  description?: ReactNode;
  variant?: "default" | "destructive";
  duration?: number;
  action?: ReactNode;
};

export function toast({ title, description, variant, duration }: ToastProps) {
  const show = variant === "destructive" ? sonner.error : sonner;
  const id = show(title ?? description, { description: title ? description : undefined, duration });
  return { id, dismiss: () => sonner.dismiss(id), update: (next: ToastProps) => toast(next) };
}

export function useToast() {
  return { toast, dismiss: (id?: string | number) => sonner.dismiss(id), toasts: [] as ToastProps[] };
}
