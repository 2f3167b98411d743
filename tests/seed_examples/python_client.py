# The original document's "Python Client Example", unchanged but for the owner_name it requires.
import asyncio
import websockets
import json
import requests

async def chat_client():
    # First, create a room via REST API
    response = requests.post('http://localhost:8000/rooms/', json={
        "name": "My Room",
        "expiry_seconds": 3600,
        "max_users": 10,
        "password": "secret123",
        "owner_name": "John Doe"
    })
    room_data = response.json()
    room_id = room_data['room_id']
    ws_url = room_data['ws_url'].replace('http://', 'ws://')
    
    # Get room details (with password for protected rooms)
    details_response = requests.get(
        f'http://localhost:8000/rooms/{room_id}',
        params={'password': 'secret123'}
    )
    room_details = details_response.json()
    print(f"Room: {room_details['name']}")
    print(f"Online users: {room_details['online_users_count']}/{room_details['max_users']}")
    print(f"Is full: {room_details['is_full']}")
    
    # Connect via WebSocket
    async with websockets.connect(ws_url) as websocket:
        # Send a message
        message = {
            "type": "message",
            "text": "Hello from Python!"
        }
        await websocket.send(json.dumps(message))
        
        # Receive messages
        async for message in websocket:
            data = json.loads(message)
            if data.get('type') == 'presence':
                if data.get('event') == 'user_online':
                    print(f"{data['display_name']} came online")
                elif data.get('event') == 'user_offline':
                    print(f"{data['display_name']} went offline")
                print(f"Online users: {data['online_count']}")
            else:
                print(f"Received: {data}")

asyncio.run(chat_client())
