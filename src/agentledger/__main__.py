from agentledger.entrypoints.cli import main

raise SystemExit(main())
