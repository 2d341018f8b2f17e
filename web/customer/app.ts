// Placeholder; the customer chat page is built here.
const app = document.getElementById('app');
if (app !== null) app.textContent = 'Parley chat';
