from inference_service.cli import main

raise SystemExit(main())
