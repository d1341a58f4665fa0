"""What more than one Signoff service or client needs: the event contract, topics, broker and logging."""
