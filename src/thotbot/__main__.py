from thotbot.cli import main

raise SystemExit(main())
