"""The server answers the basic interactions on both databases."""


def test_create_then_read(client):
    created = client.post("/Patient", json={"resourceType": "Patient", "gender": "female"})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    read = client.get(f"/Patient/{rid}")
    assert read.status_code == 200
    assert read.json()["gender"] == "female"
    assert read.headers["etag"] == 'W/"1"'
