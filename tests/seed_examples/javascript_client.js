// The original document's "JavaScript Client Example", unchanged but for the owner_name it requires.
// Create room
fetch('http://localhost:8000/rooms/', {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({
    name: 'My Room',
    expiry_seconds: 3600,
    max_users: 10,
    password: 'secret123',
    owner_name: 'John Doe'
  })
})
.then(res => res.json())
.then(data => {
  const roomId = data.room_id;
  
  // Get room details
  const detailsUrl = new URL(`http://localhost:8000/rooms/${roomId}`);
  detailsUrl.searchParams.append('password', 'secret123');
  
  fetch(detailsUrl)
    .then(res => res.json())
    .then(details => {
      console.log('Room:', details.name);
      console.log(`Online users: ${details.online_users_count}/${details.max_users}`);
      console.log('Is full:', details.is_full);
    });
  
  // Connect via WebSocket
  const ws = new WebSocket(data.ws_url);
  
  ws.onopen = () => {
    console.log('Connected to room:', roomId);
    ws.send(JSON.stringify({
      type: 'message',
      text: 'Hello from JavaScript!'
    }));
  };
  
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    console.log('Received:', message);
  };
  
  ws.onerror = (error) => {
    console.error('WebSocket error:', error);
  };
  
  ws.onclose = () => {
    console.log('Disconnected');
  };
});
