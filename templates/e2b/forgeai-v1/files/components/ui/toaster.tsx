// The older shadcn/ui `<Toaster />` import path; app/layout.tsx already renders one.
export { Toaster } from "@/components/ui/sonner";
