// Placeholder; the agent desk is built here.
const app = document.getElementById('app');
if (app !== null) app.textContent = 'Parley agent desk';
