// Plain Vite (no plugin): esbuild compiles the JSX with React's automatic runtime.
export default {
  esbuild: { jsx: 'automatic' },
  build: { outDir: process.env.FLAGPOLE_WEB_OUT || 'dist', emptyOutDir: true },
};
